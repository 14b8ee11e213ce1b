// gemm_operands: how the tiled GEMMs (gemm_tiled, gemm_tiled_large) read A and B and write C,
// where MODE says what they are in memory (row-major, NCHW):
//   MODE 0, matmul: A is a ([K,M] when TRANS_A), B is b ([N,K] when TRANS_B), C is c.
//   MODE 1, conv2d forward: M = Co, N = batch*Ho*Wo, K = Ci*Kh*Kw; A = weight, B = the input's
//           patches (implicit im2col, zero outside the image), C = output.
//   MODE 2, conv2d backward to the input: M = Ci, N = batch*H*W, K = Co*Kh*Kw; A = weight seen as
//           [Ci, Co*Kh*Kw], B = the output gradient at the positions each input pixel reached.
//   MODE 3, conv2d backward to the weight: M = Co, N = Ci*Kh*Kw, K = batch*Ho*Wo; A = output
//           gradient as [Co, batch*Ho*Wo], B = the input's patches transposed.
// Bindings: 0 params, 1 a, 2 b, 3 c (written). Loads outside the operands (or past the split's
// K range) read zero. Prepended to the tiled GEMMs; no entry point of its own.

override MODE: u32 = 0u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // conv2d geometry (MODE 1-3): batch, channels in and out, input and output sizes, kernel.
    batch: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    // K per split (workgroup z computes K range [z chunk, (z + 1) chunk) into the z-th M x N
    // slice of c: a split-K weight gradient); 0 means the whole K.
    chunk: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// The input pixel (n, ci) at output position (oy, ox) and kernel tap (ky, kx), or zero in the padding.
fn input_patch(n: u32, ci: u32, oy: u32, ox: u32, ky: u32, kx: u32) -> f32 {
    let y = i32(oy * p.stride + ky) - i32(p.pad);
    let x = i32(ox * p.stride + kx) - i32(p.pad);
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    return b[((n * p.ci + ci) * p.h + u32(y)) * p.w + u32(x)];
}

fn load_a(row: u32, kk: u32, k_end: u32) -> f32 {
    if (row >= p.m || kk >= k_end) {
        return 0.0;
    }
    switch MODE {
        case 0u: {
            if (TRANS_A) {
                return a[kk * p.m + row];
            }
            return a[row * p.k + kk];
        }
        case 2u: {
            // weight[co, ci = row, ky, kx] with kk = (co, ky, kx)
            let taps = p.kh * p.kw;
            let co = kk / taps;
            return a[(co * p.ci + row) * taps + kk % taps];
        }
        case 3u: {
            // dy[n, co = row, oy, ox] with kk = (n, oy, ox)
            let hw = p.ho * p.wo;
            let n = kk / hw;
            return a[(n * p.co + row) * hw + kk % hw];
        }
        default: {
            return a[row * p.k + kk];
        }
    }
}

fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    if (kk >= k_end || col >= p.n) {
        return 0.0;
    }
    switch MODE {
        case 0u: {
            if (TRANS_B) {
                return b[col * p.k + kk];
            }
            return b[kk * p.n + col];
        }
        case 1u: {
            // kk = (ci, ky, kx), col = (n, oy, ox)
            let taps = p.kh * p.kw;
            let ci = kk / taps;
            let t = kk % taps;
            let hw = p.ho * p.wo;
            let pix = col % hw;
            return input_patch(col / hw, ci, pix / p.wo, pix % p.wo, t / p.kw, t % p.kw);
        }
        case 2u: {
            // kk = (co, ky, kx), col = (n, y, x): dy[n, co, oy, ox] where oy * stride + ky = y + pad
            let taps = p.kh * p.kw;
            let co = kk / taps;
            let t = kk % taps;
            let ky = t / p.kw;
            let kx = t % p.kw;
            let hw = p.h * p.w;
            let n = col / hw;
            let pix = col % hw;
            let sy = i32(pix / p.w + p.pad) - i32(ky);
            let sx = i32(pix % p.w + p.pad) - i32(kx);
            if (sy < 0 || sx < 0) {
                return 0.0;
            }
            let oy = u32(sy) / p.stride;
            let ox = u32(sx) / p.stride;
            if (u32(sy) % p.stride != 0u || u32(sx) % p.stride != 0u || oy >= p.ho || ox >= p.wo) {
                return 0.0;
            }
            return b[((n * p.co + co) * p.ho + oy) * p.wo + ox];
        }
        default: {
            // MODE 3: kk = (n, oy, ox), col = (ci, ky, kx)
            let taps = p.kh * p.kw;
            let t = col % taps;
            let hw = p.ho * p.wo;
            let pix = kk % hw;
            return input_patch(kk / hw, col / taps, pix / p.wo, pix % p.wo, t / p.kw, t % p.kw);
        }
    }
}

fn store_c(row: u32, col: u32, split: u32, v: f32) {
    switch MODE {
        case 1u: {
            // col = (n, oy, ox) -> y[n, co = row, oy, ox]
            let hw = p.ho * p.wo;
            c[((col / hw) * p.co + row) * hw + col % hw] = v;
        }
        case 2u: {
            // col = (n, y, x) -> dx[n, ci = row, y, x]
            let hw = p.h * p.w;
            c[((col / hw) * p.ci + row) * hw + col % hw] = v;
        }
        default: {
            c[(split * p.m + row) * p.n + col] = v;
        }
    }
}

// Whether the tile loads walk A and B along their contiguous axis when they step through K
// (coalesced loads: consecutive invocations read consecutive addresses).
fn a_is_k_major() -> bool {
    return MODE == 0u && TRANS_A;
}

fn b_is_k_major() -> bool {
    return !(MODE == 0u && TRANS_B) && MODE != 3u;
}
