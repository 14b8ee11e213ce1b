// reduce: out[o, i] = s * sum_m x[o, m, i], the sum over the middle axis of x viewed as
// [outer, mid, inner]; out holds outer * inner elements.
// Bindings: 0 params {outer, mid, inner, s}, 1 x, 3 out. Runs are summed by cascade.wgsl
// (prepended), so the error does not grow with mid.
// sum_axis_thread: one invocation per output; dispatch grid_1d(ceil(outer * inner / 256)).
// sum_axis_group: one workgroup of 256 per output, for long sums over few outputs;
// dispatch grid_1d(outer * inner). The linear workgroup index is wid.x + wid.y * num_workgroups.x.

struct Params {
    outer: u32,
    mid: u32,
    inner: u32,
    _pad: u32,
    s: f32,
    _pad1: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn sum_axis_thread(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
    if (i >= p.outer * p.inner) {
        return;
    }
    let o = i / p.inner;
    let inner = i % p.inner;
    let base = o * p.mid * p.inner + inner;
    var acc = cascade_new();
    for (var m = 0u; m < p.mid; m++) {
        cascade_add(&acc, x[base + m * p.inner]);
    }
    out[i] = p.s * cascade_total(acc);
}

@compute @workgroup_size(256, 1, 1)
fn sum_axis_group(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wid.x + wid.y * nwg.x;
    let in_range = i < p.outer * p.inner;
    var acc = cascade_new();
    if (in_range) {
        let o = i / p.inner;
        let inner = i % p.inner;
        let base = o * p.mid * p.inner + inner;
        for (var m = lid.x; m < p.mid; m += 256u) {
            cascade_add(&acc, x[base + m * p.inner]);
        }
    }
    partial[lid.x] = cascade_total(acc);
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && in_range) {
        out[i] = p.s * partial[0];
    }
}
