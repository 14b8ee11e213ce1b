// elementwise: one invocation per output element, for the pointwise ops and broadcasts.
// Bindings: 0 params, 1 x, 2 y (binary ops only), 3 out (read-write: in-place updates read it).
// Shapes are viewed as [outer, mid, inner] where a broadcast needs it; n is the element count
// of `out`, scalars s and t are the op's constants.
// Dispatch: grid_1d(ceil(n / 256)); the linear workgroup index is wid.x + wid.y * num_workgroups.x.

struct Params {
    n: u32,
    mid: u32,
    inner: u32,
    _pad: u32,
    s: f32,
    t: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// out = x + y
@compute @workgroup_size(256, 1, 1)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = x[i] + y[i];
    }
}

// out = x * y
@compute @workgroup_size(256, 1, 1)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = x[i] * y[i];
    }
}

// out = s * x
@compute @workgroup_size(256, 1, 1)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = p.s * x[i];
    }
}

// out = max(x, 0)
@compute @workgroup_size(256, 1, 1)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = max(x[i], 0.0);
    }
}

// out = y where x > 0 else 0; x is the ReLU's output, y the incoming gradient.
@compute @workgroup_size(256, 1, 1)
fn relu_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = select(0.0, y[i], x[i] > 0.0);
    }
}

// out[o, m, i] = x[o, m, i] + y[m]: a bias along the middle axis.
@compute @workgroup_size(256, 1, 1)
fn bias_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = x[i] + y[(i / p.inner) % p.mid];
    }
}

// out[o, m, i] = s * x[o, i]: repeats x along a new middle axis of length mid.
@compute @workgroup_size(256, 1, 1)
fn broadcast_axis(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let inner = i % p.inner;
        let outer = i / (p.inner * p.mid);
        out[i] = p.s * x[outer * p.inner + inner];
    }
}

// out -= s * x, in place: a plain gradient-descent step with learning rate s.
@compute @workgroup_size(256, 1, 1)
fn sgd_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = out[i] - p.s * x[i];
    }
}

// out = 0, in place (clears a gradient accumulator even if it held a NaN).
@compute @workgroup_size(256, 1, 1)
fn fill_zero(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = 0.0;
    }
}

// out = s * out + t * x, in place: an exponential moving average (running statistics, target network).
@compute @workgroup_size(256, 1, 1)
fn ema_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = p.s * out[i] + p.t * x[i];
    }
}

// out = x[mid * n + i]: row `mid` of a matrix of rows of n.
@compute @workgroup_size(256, 1, 1)
fn take_row(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        out[i] = x[p.mid * p.n + i];
    }
}
