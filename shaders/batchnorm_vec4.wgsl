// batchnorm_vec4: the batch-norm kernels of training (batch statistics, the transform fused with
// the ReLU and the residual add, the gradient sums and dx) for x viewed as [N, C, S] with S a
// multiple of 4, so that four consecutive elements share one channel: every tensor-sized operand
// moves as vec4 (one load where the scalar kernels of batchnorm.wgsl take four; on software
// adapters every load is a loop over the SIMD lanes) and every per-channel value is read once
// per four elements. Vec4 q holds elements 4q..4q+3, of channel (q / S4) % C with S4 = S / 4.
// Bindings: 0 params {batch, channels, spatial4, flags, eps, scale, run}; tensor-sized vec4 operands
// 1 t1, 2 t2, 3 t3; per-channel values 4 c1, 5 c2, 6 c3, 7 c4; outputs 8 out4 (tensor-sized) or
// 9 outc (per channel); each entry names what it reads.
// Compiled unchecked: every index is guarded against the sizes in params, whose buffers the
// host sizes from the same shapes.
// Reductions (channel_*): one workgroup of 256 per channel, each lane's vec4 run summed by a
// vec4 cascade (cascade.wgsl, prepended), then a tree over the lanes; dispatch grid_1d(C).
// Pointwise entries: `run` consecutive vec4 of one channel per invocation (run divides S4), its
// per-channel values read once: on software adapters every storage load costs a loop over the
// lanes (`byol bench memory` on lavapipe: the normalise and input-gradient kernels move 1.5x
// the GB/s they did with one vec4 per invocation); hardware GPUs take run = 1, coalesced.
// Dispatch grid_1d(ceil(N C S4 / (256 run))).
// The linear workgroup index is wid.x + wid.y * num_workgroups.x.

struct Params {
    batch: u32,
    channels: u32,
    spatial4: u32,
    flags: u32,
    eps: f32,
    scale: f32,
    run: u32,
    _pad2: f32,
}

// flags of bn_apply4: ReLU after the transform, and the residual t2 added before it.
const RELU: u32 = 1u;
const ADD: u32 = 2u;
// flags of the gradient kernels: dy is masked by the ReLU's output t3 (dy where t3 > 0).
const MASKED: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> t1: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> t2: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> t3: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> c1: array<f32>;
@group(0) @binding(5) var<storage, read> c2: array<f32>;
@group(0) @binding(6) var<storage, read> c3: array<f32>;
@group(0) @binding(7) var<storage, read> c4: array<f32>;
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> outc: array<f32>;

var<workgroup> partial: array<vec2<f32>, 256>;

fn linear(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Sums partial[] over the workgroup into partial[0].
fn reduce_partial(lid: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
}

// outc[c] = scale * sum of t1 over the channel (the mean when scale = 1 / M).
@compute @workgroup_size(256, 1, 1)
fn channel_sum4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m4 = p.batch * p.spatial4;
    var acc = cascade4_new();
    if (c < p.channels) {
        var w = channel_walk(c, lid.x, p.channels, p.spatial4);
        for (var j = lid.x; j < m4; j += 256u) {
            cascade4_add(&acc, t1[w.e]);
            walk_step(&w);
        }
    }
    partial[lid.x] = vec2<f32>(cascade4_total(acc), 0.0);
    reduce_partial(lid.x);
    if (lid.x == 0u && c < p.channels) {
        outc[c] = p.scale * partial[0].x;
    }
}

// outc[c] = the mean of t1 over the channel, outc[C + c] = scale * the sum of its squared
// deviations (the biased variance when scale = 1 / M), in one pass: each lane sums its run about
// the mean of its first vec4, and the lanes' moments merge (cascade.wgsl).
@compute @workgroup_size(256, 1, 1)
fn channel_moments4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m4 = p.batch * p.spatial4;
    var s1 = cascade4_new();
    var s2 = cascade4_new();
    var shift = 0.0;
    if (c < p.channels && lid.x < m4) {
        var w = channel_walk(c, lid.x, p.channels, p.spatial4);
        let first = t1[w.e];
        shift = 0.25 * ((first.x + first.y) + (first.z + first.w));
        for (var j = lid.x; j < m4; j += 256u) {
            let d = t1[w.e] - shift;
            cascade4_add(&s1, d);
            cascade4_add(&s2, d * d);
            walk_step(&w);
        }
    }
    moments[lid.x] = moments_from_shifted(4.0 * f32(s1.n), shift, cascade4_total(s1), cascade4_total(s2));
    reduce_moments(lid.x);
    if (lid.x == 0u && c < p.channels) {
        outc[c] = moments[0].y;
        outc[p.channels + c] = p.scale * moments[0].z;
    }
}

// out4 = (t1 - c1[c]) / sqrt(c2[c] + eps) * c3[c] + c4[c]: x, mean, var, gamma, beta; then
// + t2 (the residual) with ADD, and max(., 0) with RELU.
@compute @workgroup_size(256, 1, 1)
fn bn_apply4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = (linear(wid, nwg) * 256u + lid.x) * p.run;
    if (first >= p.batch * p.channels * p.spatial4) {
        return;
    }
    let c = (first / p.spatial4) % p.channels;
    let mean = c1[c];
    let scale = inverseSqrt(c2[c] + p.eps) * c3[c];
    let shift = c4[c];
    for (var q = first; q < first + p.run; q++) {
        var y = (t1[q] - mean) * scale + shift;
        if ((p.flags & ADD) != 0u) {
            y += t2[q];
        }
        if ((p.flags & RELU) != 0u) {
            y = max(y, vec4<f32>(0.0));
        }
        out4[q] = y;
    }
}

// dy where the ReLU's output t3 is positive (MASKED), else dy itself.
fn masked_dy(q: u32) -> vec4<f32> {
    let dy = t1[q];
    if ((p.flags & MASKED) != 0u) {
        return select(vec4<f32>(0.0), dy, t3[q] > vec4<f32>(0.0));
    }
    return dy;
}

// outc[c] = sum of dy and outc[C + c] = sum of dy x_hat over the channel, in one pass: t1 = dy,
// t2 = x, t3 = the ReLU's output (MASKED), c1 = mean, c2 = var.
@compute @workgroup_size(256, 1, 1)
fn bn_grad_sums4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear(wid, nwg);
    let m4 = p.batch * p.spatial4;
    var sum = cascade4_new();
    var dot = cascade4_new();
    var istd = 0.0;
    if (c < p.channels) {
        let mean = c1[c];
        istd = inverseSqrt(c2[c] + p.eps);
        var w = channel_walk(c, lid.x, p.channels, p.spatial4);
        for (var j = lid.x; j < m4; j += 256u) {
            let dy = masked_dy(w.e);
            cascade4_add(&sum, dy);
            cascade4_add(&dot, dy * (t2[w.e] - mean));
            walk_step(&w);
        }
    }
    partial[lid.x] = vec2<f32>(cascade4_total(sum), cascade4_total(dot));
    reduce_partial(lid.x);
    if (lid.x == 0u && c < p.channels) {
        outc[c] = partial[0].x;
        outc[p.channels + c] = partial[0].y * istd;
    }
}

// dx of batch norm with batch statistics, scale = 1 / M: t1 = dy, t2 = x, t3 = the ReLU's
// output (MASKED), c1 = mean, c2 = var, c3 = gamma, c4 = the sums of bn_grad_sums4 ->
// gamma istd (dy - sum(dy) / M - x_hat sum(dy x_hat) / M).
@compute @workgroup_size(256, 1, 1)
fn bn_batch_stats_grad4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = (linear(wid, nwg) * 256u + lid.x) * p.run;
    if (first >= p.batch * p.channels * p.spatial4) {
        return;
    }
    let c = (first / p.spatial4) % p.channels;
    let mean = c1[c];
    let istd = inverseSqrt(c2[c] + p.eps);
    let gamma = c3[c];
    let mean_dy = p.scale * c4[c];
    let mean_dot = p.scale * c4[p.channels + c];
    for (var q = first; q < first + p.run; q++) {
        let x_hat = (t2[q] - mean) * istd;
        out4[q] = gamma * istd * (masked_dy(q) - mean_dy - x_hat * mean_dot);
    }
}
