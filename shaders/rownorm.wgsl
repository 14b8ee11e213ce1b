// rownorm: row-wise kernels over [rows, cols] matrices that need a row's dot products:
// L2 normalisation and the BYOL regression loss, forward and backward.
// Normalisation follows torch.nn.functional.normalize: x_hat = x / max(||x||, eps).
// Bindings: 0 params {rows, cols, eps}, 1 x (or p), 2 y (second operand), 3 g (incoming
// gradient, backward only), 4 out.
// Dispatch: grid_1d(rows); one workgroup of 64 per row; the row is wid.x + wid.y * num_workgroups.x.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
    eps: f32,
    _pad2: f32,
    _pad3: f32,
    _pad4: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<vec3<f32>, 64>;

// Sums each lane's vec3 over the workgroup; every invocation gets the total.
fn reduce3(lid: u32, v: vec3<f32>) -> vec3<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// out = x / max(||x||, eps), row by row.
@compute @workgroup_size(64, 1, 1)
fn l2norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = row_of(wid, nwg);
    let lid = lid3.x;
    let live = row < p.rows;
    let base = row * p.cols;
    var ss = 0.0;
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            ss += x[base + j] * x[base + j];
        }
    }
    let inv = 1.0 / max(sqrt(reduce3(lid, vec3<f32>(ss, 0.0, 0.0)).x), p.eps);
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            out[base + j] = x[base + j] * inv;
        }
    }
}

// Gradient of l2norm_forward: with n = ||x||, x_hat = x / n and incoming gradient g,
// out = (g - x_hat (x_hat . g)) / n when n > eps, else g / eps.
@compute @workgroup_size(64, 1, 1)
fn l2norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = row_of(wid, nwg);
    let lid = lid3.x;
    let live = row < p.rows;
    let base = row * p.cols;
    var s = vec3<f32>(0.0);
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            s += vec3<f32>(x[base + j] * x[base + j], x[base + j] * g[base + j], 0.0);
        }
    }
    let t = reduce3(lid, s);
    let n = sqrt(t.x);
    if (!live) {
        return;
    }
    if (n > p.eps) {
        let inv = 1.0 / n;
        let proj = t.y * inv * inv;
        for (var j = lid; j < p.cols; j += WG) {
            out[base + j] = (g[base + j] - x[base + j] * proj) * inv;
        }
    } else {
        for (var j = lid; j < p.cols; j += WG) {
            out[base + j] = g[base + j] / p.eps;
        }
    }
}

// BYOL regression loss per row: out[row] = 2 - 2 <x_hat, y_hat>.
@compute @workgroup_size(64, 1, 1)
fn byol_loss_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = row_of(wid, nwg);
    let lid = lid3.x;
    let live = row < p.rows;
    let base = row * p.cols;
    var s = vec3<f32>(0.0);
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            let a = x[base + j];
            let b = y[base + j];
            s += vec3<f32>(a * a, b * b, a * b);
        }
    }
    let t = reduce3(lid, s);
    if (live && lid == 0u) {
        out[row] = 2.0 - 2.0 * t.z / (max(sqrt(t.x), p.eps) * max(sqrt(t.y), p.eps));
    }
}

// Gradient of byol_loss_forward with respect to x, given g[row] (swap x and y for the other):
// with c = <x_hat, y_hat> and n = ||x||, out = -2 g (y_hat - c x_hat) / n when n > eps,
// else -2 g y_hat / eps.
@compute @workgroup_size(64, 1, 1)
fn byol_loss_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = row_of(wid, nwg);
    let lid = lid3.x;
    let live = row < p.rows;
    let base = row * p.cols;
    var s = vec3<f32>(0.0);
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            let a = x[base + j];
            let b = y[base + j];
            s += vec3<f32>(a * a, b * b, a * b);
        }
    }
    let t = reduce3(lid, s);
    if (!live) {
        return;
    }
    let nx = sqrt(t.x);
    let inv_x = 1.0 / max(nx, p.eps);
    let inv_y = 1.0 / max(sqrt(t.y), p.eps);
    let cosine = t.z * inv_x * inv_y;
    let scale = -2.0 * g[row] * inv_x;
    for (var j = lid; j < p.cols; j += WG) {
        let yh = y[base + j] * inv_y;
        var d = yh;
        if (nx > p.eps) {
            d = yh - cosine * x[base + j] * inv_x;
        }
        out[base + j] = scale * d;
    }
}

// Max over the workgroup of each lane's value; every invocation gets it.
fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = vec3<f32>(v, 0.0, 0.0);
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            red[lid].x = max(red[lid].x, red[lid + stride].x);
        }
        workgroupBarrier();
    }
    let m = red[0].x;
    workgroupBarrier();
    return m;
}

// Per row: (max x, sum exp(x - max), sum y, <y, x>), for every invocation of the row's workgroup.
fn softmax_stats(lid: u32, live: bool, base: u32) -> vec4<f32> {
    var m = -3.4e38;
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            m = max(m, x[base + j]);
        }
    }
    let mx = reduce_max(lid, m);
    var s = vec3<f32>(0.0);
    if (live) {
        for (var j = lid; j < p.cols; j += WG) {
            s += vec3<f32>(exp(x[base + j] - mx), y[base + j], y[base + j] * x[base + j]);
        }
    }
    return vec4<f32>(mx, reduce3(lid, s));
}

// Softmax cross-entropy per row against target distributions y (one-hot labels):
// out[row] = logsumexp(x) * sum(y) - <y, x>.
@compute @workgroup_size(64, 1, 1)
fn softmax_xent_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = row_of(wid, nwg);
    let live = row < p.rows;
    let t = softmax_stats(lid3.x, live, row * p.cols);
    if (live && lid3.x == 0u) {
        out[row] = (t.x + log(t.y)) * t.z - t.w;
    }
}

// Gradient of softmax_xent_forward with respect to x: g[row] * (softmax(x) sum(y) - y).
@compute @workgroup_size(64, 1, 1)
fn softmax_xent_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = row_of(wid, nwg);
    let lid = lid3.x;
    let live = row < p.rows;
    let base = row * p.cols;
    let t = softmax_stats(lid, live, base);
    if (!live) {
        return;
    }
    let dl = g[row];
    for (var j = lid; j < p.cols; j += WG) {
        out[base + j] = dl * (exp(x[base + j] - t.x) / t.y * t.z - y[base + j]);
    }
}
