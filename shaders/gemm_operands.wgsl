// gemm_operands: how the tiled GEMMs (gemm_tiled, gemm_tiled_large) read A and B and write C,
// where MODE says what they are in memory (row-major, NCHW):
//   MODE 0, matmul: A is a ([K,M] when TRANS_A), B is b ([N,K] when TRANS_B), C is c.
//   MODE 1, conv2d forward: M = Co, N = batch*Ho*Wo, K = Ci*Kh*Kw; A = weight, B = the input's
//           patches (implicit im2col, zero outside the image), C = output.
//   MODE 2, conv2d backward to the input, one parity class (see conv2d.rs: the input pixels
//           (y, x) with (y + pad) % stride == (ry, rx), which only the taps ky = ry + stride ty,
//           kx = rx + stride tx reach): M = Ci, N = batch*hc*wc, K = Co*th*tw; A = those taps of
//           the weight seen as [Ci, Co*th*tw], B = the output gradient at (jy - ty, jx - tx),
//           C = the class's pixels y = stride jy + ry - pad, x = stride jx + rx - pad of dx.
//           A stride-1 pass is one class, and a strided one never multiplies the zeros between
//           the output gradient's pixels.
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
    // MODE 2's parity class: residues, first index, extent, taps.
    ry: u32,
    rx: u32,
    jy0: u32,
    jx0: u32,
    hc: u32,
    wc: u32,
    th: u32,
    tw: u32,
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
            // weight[co, ci = row, ry + stride ty, rx + stride tx] with kk = (co, ty, tx)
            let taps = p.th * p.tw;
            let co = kk / taps;
            let ky = p.ry + (kk % taps) / p.tw * p.stride;
            let kx = p.rx + kk % p.tw * p.stride;
            return a[((co * p.ci + row) * p.kh + ky) * p.kw + kx];
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
            // kk = (co, ty, tx), col = (n, jy - jy0, jx - jx0): dy[n, co, jy - ty, jx - tx]
            let taps = p.th * p.tw;
            let co = kk / taps;
            let hw = p.hc * p.wc;
            let pix = col % hw;
            let oy = i32(pix / p.wc + p.jy0) - i32((kk % taps) / p.tw);
            let ox = i32(pix % p.wc + p.jx0) - i32(kk % p.tw);
            if (oy < 0 || ox < 0 || oy >= i32(p.ho) || ox >= i32(p.wo)) {
                return 0.0;
            }
            return b[(((col / hw) * p.co + co) * p.ho + u32(oy)) * p.wo + u32(ox)];
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
            // col = (n, jy - jy0, jx - jx0) -> dx[n, ci = row, stride jy + ry - pad, stride jx + rx - pad]
            let hw = p.hc * p.wc;
            let pix = col % hw;
            let y = (pix / p.wc + p.jy0) * p.stride + p.ry - p.pad;
            let x = (pix % p.wc + p.jx0) * p.stride + p.rx - p.pad;
            c[(((col / hw) * p.ci + row) * p.h + y) * p.w + x] = v;
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
