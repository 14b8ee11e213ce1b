// pool: max pooling over k x k windows with stride and padding (padding never wins), and its
// gradient. Planes are [N*C] images of h x w (input) and ho x wo (output).
// Bindings: 0 params, 1 x, 2 dy (backward only), 3 out.
// Dispatch: grid_1d(ceil(len(out) / 256)); the linear workgroup index is wid.x + wid.y * num_workgroups.x.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    k: u32,
    stride: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

// The flat input index of the maximum of window (plane, oy, ox); the first in row-major order on ties.
fn argmax(plane: u32, oy: u32, ox: u32) -> u32 {
    let base = plane * p.h * p.w;
    var best = 0u;
    var best_value = 0.0;
    var found = false;
    for (var ky = 0u; ky < p.k; ky++) {
        let y = i32(oy * p.stride + ky) - i32(p.pad);
        if (y < 0 || y >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx++) {
            let xx = i32(ox * p.stride + kx) - i32(p.pad);
            if (xx < 0 || xx >= i32(p.w)) {
                continue;
            }
            let i = base + u32(y) * p.w + u32(xx);
            let v = x[i];
            if (!found || v > best_value) {
                best = i;
                best_value = v;
                found = true;
            }
        }
    }
    return best;
}

@compute @workgroup_size(256, 1, 1)
fn maxpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.planes * p.ho * p.wo) {
        return;
    }
    let plane = i / (p.ho * p.wo);
    let pix = i % (p.ho * p.wo);
    out[i] = x[argmax(plane, pix / p.wo, pix % p.wo)];
}

// Each input pixel gathers dy from the windows whose maximum it is.
@compute @workgroup_size(256, 1, 1)
fn maxpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, nwg, lid);
    if (i >= p.planes * p.h * p.w) {
        return;
    }
    let plane = i / (p.h * p.w);
    let pix = i % (p.h * p.w);
    let y = pix / p.w + p.pad;
    let xx = pix % p.w + p.pad;
    // Windows oy with oy * stride <= y < oy * stride + k.
    let oy_lo = select(0u, (y - p.k + p.stride) / p.stride, y + 1u > p.k);
    let ox_lo = select(0u, (xx - p.k + p.stride) / p.stride, xx + 1u > p.k);
    var acc = 0.0;
    for (var oy = oy_lo; oy <= y / p.stride && oy < p.ho; oy++) {
        for (var ox = ox_lo; ox <= xx / p.stride && ox < p.wo; ox++) {
            if (argmax(plane, oy, ox) == i) {
                acc += dy[(plane * p.ho + oy) * p.wo + ox];
            }
        }
    }
    out[i] = acc;
}
