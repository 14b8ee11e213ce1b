// The BYOL augmentations of one view for a whole batch: one workgroup per image. Each thread
// owns the output pixels lid, lid + 256, ...; per-pixel stages work on the thread's own pixels
// in `out`, reductions (contrast means) go through workgroup memory, and the blur reads its
// neighbours after a storage barrier. The CPU reference is src/augment/reference.rs.

struct Uniforms {
    side: u32,
    channels: u32,
    radius: u32,
    batch: u32,
    mean: vec4<f32>,
    stdev: vec4<f32>,
}

@group(0) @binding(0) var<uniform> u: Uniforms;
// Source pixels, one u32 per pixel: R | G << 8 | B << 16 (grayscale images fill R only).
@group(0) @binding(1) var<storage, read> src: array<u32>;
// Per image: pixel offset into src, width, height, (unused).
@group(0) @binding(2) var<storage, read> info: array<u32>;
// Per image: the 16 words of ViewParams::to_words.
@group(0) @binding(3) var<storage, read> prm: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;

const WG: u32 = 256u;
const P_CROP: u32 = 0u;
const P_FLIP: u32 = 4u;
const P_JITTER: u32 = 5u;
const P_BRIGHTNESS: u32 = 6u;
const P_CONTRAST: u32 = 7u;
const P_SATURATION: u32 = 8u;
const P_HUE: u32 = 9u;
const P_ORDER: u32 = 10u;
const P_GRAY: u32 = 11u;
const P_SIGMA: u32 = 12u;
const P_SOLARIZE: u32 = 13u;
const P_BRIGHTNESS_FACTOR: u32 = 14u;
const P_BILINEAR: u32 = 15u;

var<workgroup> partial: array<vec4<f32>, 256>;
// The blur's normalised weights for offsets -radius..radius (radius <= MAX_RADIUS).
const MAX_RADIUS: u32 = 63u;
var<workgroup> blur_weights: array<f32, 127>;
// Per-image flags every thread must agree on (barriers depend on them): jitter, order,
// blur, grayscale.
var<workgroup> shared_flags: vec4<u32>;

fn cubic(t_in: f32) -> f32 {
    let a = -0.5;
    let t = abs(t_in);
    if (t <= 1.0) {
        return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    }
    if (t < 2.0) {
        return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
    }
    return 0.0;
}

// The bilinear kernel (the tent): with the same 4 x 4 taps it resamples as bilinear does.
fn tent(t: f32) -> f32 {
    return max(1.0 - abs(t), 0.0);
}

fn resample_weight(t: f32, bilinear: bool) -> f32 {
    if (bilinear) {
        return tent(t);
    }
    return cubic(t);
}

fn texel(base: u32, width: u32, x: u32, y: u32) -> vec3<f32> {
    let v = src[base + y * width + x];
    return vec3<f32>(f32(v & 255u), f32((v >> 8u) & 255u), f32((v >> 16u) & 255u)) / 255.0;
}

fn rgb_to_hsv(c: vec3<f32>) -> vec3<f32> {
    let v = max(c.r, max(c.g, c.b));
    let range = v - min(c.r, min(c.g, c.b));
    var s = 0.0;
    if (v > 0.0) {
        s = range / v;
    }
    var h = 0.0;
    if (range > 0.0) {
        if (v == c.r) {
            h = (c.g - c.b) / range;
        } else if (v == c.g) {
            h = (c.b - c.r) / range + 2.0;
        } else {
            h = (c.r - c.g) / range + 4.0;
        }
    }
    h = h / 6.0;
    return vec3<f32>(h - floor(h), s, v);
}

fn hsv_to_rgb(c: vec3<f32>) -> vec3<f32> {
    let h6 = c.x * 6.0;
    let rgb = clamp(
        vec3<f32>(abs(h6 - 3.0) - 1.0, 2.0 - abs(h6 - 2.0), 2.0 - abs(h6 - 4.0)),
        vec3<f32>(0.0),
        vec3<f32>(1.0),
    );
    return ((rgb - 1.0) * c.y + 1.0) * c.z;
}

fn load_px(base: u32, plane: u32, p: u32) -> vec3<f32> {
    var c = vec3<f32>(out[base + p], 0.0, 0.0);
    if (u.channels == 3u) {
        c.y = out[base + plane + p];
        c.z = out[base + 2u * plane + p];
    }
    return c;
}

fn store_px(base: u32, plane: u32, p: u32, c: vec3<f32>) {
    out[base + p] = c.x;
    if (u.channels == 3u) {
        out[base + plane + p] = c.y;
        out[base + 2u * plane + p] = c.z;
    }
}

// Sum over the workgroup of each thread's `v`; every thread gets the total.
fn workgroup_sum(lid: u32, v: vec4<f32>) -> vec4<f32> {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

fn gauss(k: i32, sigma: f32) -> f32 {
    let d = f32(k);
    return exp(-d * d / (2.0 * sigma * sigma));
}

@compute @workgroup_size(256)
fn augment(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let img = wid.x;
    let lid = lid3.x;
    let side = u.side;
    let plane = side * side;
    let base = img * u.channels * plane;
    let pb = img * 16u;
    let src_base = info[img * 4u];
    let src_w = info[img * 4u + 1u];

    if (lid == 0u) {
        shared_flags = vec4<u32>(
            u32(prm[pb + P_JITTER] > 0.5),
            u32(prm[pb + P_ORDER]),
            u32(prm[pb + P_SIGMA] > 0.0),
            u32(prm[pb + P_GRAY] > 0.5),
        );
    }
    let flags = workgroupUniformLoad(&shared_flags);

    // Random resized crop with bicubic (or bilinear) resampling, and the flip.
    let x0 = prm[pb + P_CROP];
    let y0 = prm[pb + P_CROP + 1u];
    let cw = prm[pb + P_CROP + 2u];
    let ch = prm[pb + P_CROP + 3u];
    let flip = prm[pb + P_FLIP] > 0.5;
    let bilinear = prm[pb + P_BILINEAR] > 0.5;
    let sx = cw / f32(side);
    let sy = ch / f32(side);
    for (var p = lid; p < plane; p += WG) {
        let oy = p / side;
        var ox = p % side;
        if (flip) {
            ox = side - 1u - ox;
        }
        let fu = (f32(ox) + 0.5) * sx - 0.5;
        let fv = (f32(oy) + 0.5) * sy - 0.5;
        let iu = floor(fu);
        let iv = floor(fv);
        var acc = vec3<f32>(0.0);
        for (var j = -1; j <= 2; j++) {
            let wy = resample_weight(fv - (iv + f32(j)), bilinear);
            let yy = u32(clamp(i32(iv) + j, 0, i32(ch) - 1)) + u32(y0);
            for (var i = -1; i <= 2; i++) {
                let wx = resample_weight(fu - (iu + f32(i)), bilinear);
                let xx = u32(clamp(i32(iu) + i, 0, i32(cw) - 1)) + u32(x0);
                acc += wx * wy * texel(src_base, src_w, xx, yy);
            }
        }
        store_px(base, plane, p, clamp(acc, vec3<f32>(0.0), vec3<f32>(1.0)));
    }

    // Colour jitter: four ops in this image's order, each clipped to [0, 1].
    if (flags.x == 1u) {
        for (var slot = 0u; slot < 4u; slot++) {
            let op = (flags.y >> (2u * slot)) & 3u;
            if (op == 0u) {
                // factor x + delta: additive (factor 1) or multiplicative (delta 0).
                let delta = prm[pb + P_BRIGHTNESS];
                let factor = prm[pb + P_BRIGHTNESS_FACTOR];
                for (var p = lid; p < plane; p += WG) {
                    store_px(base, plane, p, clamp(factor * load_px(base, plane, p) + delta, vec3<f32>(0.0), vec3<f32>(1.0)));
                }
            } else if (op == 1u) {
                var sum = vec3<f32>(0.0);
                for (var p = lid; p < plane; p += WG) {
                    sum += load_px(base, plane, p);
                }
                let mean = workgroup_sum(lid, vec4<f32>(sum, 0.0)).xyz / f32(plane);
                let f = prm[pb + P_CONTRAST];
                for (var p = lid; p < plane; p += WG) {
                    let c = f * (load_px(base, plane, p) - mean) + mean;
                    store_px(base, plane, p, clamp(c, vec3<f32>(0.0), vec3<f32>(1.0)));
                }
            } else if (u.channels == 3u) {
                let saturation = prm[pb + P_SATURATION];
                let hue = prm[pb + P_HUE];
                for (var p = lid; p < plane; p += WG) {
                    var hsv = rgb_to_hsv(load_px(base, plane, p));
                    if (op == 2u) {
                        hsv.y = clamp(hsv.y * saturation, 0.0, 1.0);
                    } else {
                        let h = hsv.x + hue;
                        hsv.x = h - floor(h);
                    }
                    store_px(base, plane, p, clamp(hsv_to_rgb(hsv), vec3<f32>(0.0), vec3<f32>(1.0)));
                }
            }
        }
    }

    if (flags.w == 1u && u.channels == 3u) {
        for (var p = lid; p < plane; p += WG) {
            let c = load_px(base, plane, p);
            let g = 0.2989 * c.x + 0.5870 * c.y + 0.1140 * c.z;
            store_px(base, plane, p, vec3<f32>(g));
        }
    }

    // Separable Gaussian blur with zero padding: rows into scratch, then columns back.
    if (flags.z == 1u) {
        let sigma = prm[pb + P_SIGMA];
        let r = i32(min(u.radius, MAX_RADIUS));
        if (lid == 0u) {
            var norm = 0.0;
            for (var k = -r; k <= r; k++) {
                norm += gauss(k, sigma);
            }
            for (var k = -r; k <= r; k++) {
                blur_weights[k + r] = gauss(k, sigma) / norm;
            }
        }
        storageBarrier();
        workgroupBarrier();
        for (var p = lid; p < plane; p += WG) {
            let y = p / side;
            let x = i32(p % side);
            for (var c = 0u; c < u.channels; c++) {
                var acc = 0.0;
                for (var k = -r; k <= r; k++) {
                    let xx = x + k;
                    if (xx >= 0 && xx < i32(side)) {
                        acc += blur_weights[k + r] * out[base + c * plane + y * side + u32(xx)];
                    }
                }
                scratch[base + c * plane + p] = acc;
            }
        }
        storageBarrier();
        for (var p = lid; p < plane; p += WG) {
            let y = i32(p / side);
            let x = p % side;
            for (var c = 0u; c < u.channels; c++) {
                var acc = 0.0;
                for (var k = -r; k <= r; k++) {
                    let yy = y + k;
                    if (yy >= 0 && yy < i32(side)) {
                        acc += blur_weights[k + r] * scratch[base + c * plane + u32(yy) * side + x];
                    }
                }
                out[base + c * plane + p] = acc;
            }
        }
    }

    // Solarisation, then normalisation with the dataset's statistics.
    let solarize = prm[pb + P_SOLARIZE] > 0.5;
    for (var p = lid; p < plane; p += WG) {
        for (var c = 0u; c < u.channels; c++) {
            var v = out[base + c * plane + p];
            if (solarize && v >= 0.5) {
                v = 1.0 - v;
            }
            out[base + c * plane + p] = (clamp(v, 0.0, 1.0) - u.mean[c]) / u.stdev[c];
        }
    }
}
