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

// An operand element's index in two parts, which `gather_a` and `gather_b` add: the part fixed by
// a row of A or a column of B (`a_fixed`, `b_fixed`: computed once per tile slot, before the K
// loop) and the part that moves with K (`a_moving`, `b_moving`: once per step of K, shared by
// the slot's elements at that K). The element sits at off + y * width + x (both parts summed),
// and reads zero where y or x falls outside the operand's plane (padding, or an output gradient
// pixel no tap reaches) or where either part is past its operand or the split's K range. So
// the divisions that unpack (n, oy, ox) and (ci, ky, kx) run per slot and per step rather than
// per element.
struct Part {
    off: i32,
    y: i32,
    x: i32,
    ok: bool,
}

// Row `row` of A.
fn a_fixed(row: u32) -> Part {
    var f = Part(0, 0, 0, row < p.m);
    switch MODE {
        case 0u: {
            f.off = select(i32(row * p.k), i32(row), TRANS_A);
        }
        case 2u: {
            // weight[co, ci = row, ky, kx]
            f.off = i32(row * p.kh * p.kw);
        }
        case 3u: {
            // dy[n, co = row, oy, ox]
            f.off = i32(row * p.ho * p.wo);
        }
        default: {
            // MODE 1: the weight as [Co, Ci*Kh*Kw]
            f.off = i32(row * p.k);
        }
    }
    return f;
}

// Index kk of A's K axis.
fn a_moving(kk: u32, k_end: u32) -> Part {
    var m = Part(0, 0, 0, kk < k_end);
    switch MODE {
        case 0u: {
            m.off = select(i32(kk), i32(kk * p.m), TRANS_A);
        }
        case 2u: {
            // kk = (co, ty, tx): weight[co, ci, ry + stride ty, rx + stride tx]
            let taps = p.th * p.tw;
            let ky = p.ry + (kk % taps) / p.tw * p.stride;
            let kx = p.rx + kk % p.tw * p.stride;
            m.off = i32(((kk / taps) * p.ci * p.kh + ky) * p.kw + kx);
        }
        case 3u: {
            // kk = (n, oy, ox)
            let hw = p.ho * p.wo;
            m.off = i32((kk / hw) * p.co * hw + kk % hw);
        }
        default: {
            m.off = i32(kk);
        }
    }
    return m;
}

fn gather_a(f: Part, m: Part) -> f32 {
    if (!(f.ok && m.ok)) {
        return 0.0;
    }
    return a[f.off + m.off];
}

// Column `col` of B.
fn b_fixed(col: u32) -> Part {
    var f = Part(0, 0, 0, col < p.n);
    switch MODE {
        case 0u: {
            f.off = select(i32(col), i32(col * p.k), TRANS_B);
        }
        case 1u: {
            // col = (n, oy, ox): image n's input, the corner of the output pixel's window
            let hw = p.ho * p.wo;
            let pix = col % hw;
            f.off = i32((col / hw) * p.ci * p.h * p.w);
            f.y = i32(pix / p.wo * p.stride) - i32(p.pad);
            f.x = i32(pix % p.wo * p.stride) - i32(p.pad);
        }
        case 2u: {
            // col = (n, jy - jy0, jx - jx0): image n's output gradient at (jy, jx)
            let hw = p.hc * p.wc;
            let pix = col % hw;
            f.off = i32((col / hw) * p.co * p.ho * p.wo);
            f.y = i32(pix / p.wc + p.jy0);
            f.x = i32(pix % p.wc + p.jx0);
        }
        default: {
            // MODE 3: col = (ci, ky, kx): channel ci's input plane, shifted by the tap
            let taps = p.kh * p.kw;
            let t = col % taps;
            f.off = i32((col / taps) * p.h * p.w);
            f.y = i32(t / p.kw);
            f.x = i32(t % p.kw);
        }
    }
    return f;
}

// Index kk of B's K axis.
fn b_moving(kk: u32, k_end: u32) -> Part {
    var m = Part(0, 0, 0, kk < k_end);
    switch MODE {
        case 0u: {
            m.off = select(i32(kk * p.n), i32(kk), TRANS_B);
        }
        case 1u: {
            // kk = (ci, ky, kx)
            let taps = p.kh * p.kw;
            let t = kk % taps;
            m.off = i32((kk / taps) * p.h * p.w);
            m.y = i32(t / p.kw);
            m.x = i32(t % p.kw);
        }
        case 2u: {
            // kk = (co, ty, tx): the output gradient pixel (jy - ty, jx - tx) of channel co
            let taps = p.th * p.tw;
            let t = kk % taps;
            m.off = i32((kk / taps) * p.ho * p.wo);
            m.y = -i32(t / p.tw);
            m.x = -i32(t % p.tw);
        }
        default: {
            // MODE 3: kk = (n, oy, ox): image n, the corner of the output pixel's window
            let hw = p.ho * p.wo;
            let pix = kk % hw;
            m.off = i32((kk / hw) * p.ci * p.h * p.w);
            m.y = i32(pix / p.wo * p.stride) - i32(p.pad);
            m.x = i32(pix % p.wo * p.stride) - i32(p.pad);
        }
    }
    return m;
}

// B's plane: the input (MODE 1, 3), the output gradient (MODE 2), a single element (MODE 0).
fn b_plane() -> vec2<i32> {
    switch MODE {
        case 0u: {
            return vec2<i32>(1, 1);
        }
        case 2u: {
            return vec2<i32>(i32(p.ho), i32(p.wo));
        }
        default: {
            return vec2<i32>(i32(p.h), i32(p.w));
        }
    }
}

fn gather_b(f: Part, m: Part) -> f32 {
    let y = f.y + m.y;
    let x = f.x + m.x;
    let plane = b_plane();
    if (!(f.ok && m.ok) || y < 0 || x < 0 || y >= plane.x || x >= plane.y) {
        return 0.0;
    }
    return b[f.off + m.off + y * plane.y + x];
}

// Where C's element (row, col) of K split `split` goes: c[c_column(col) + c_row(row, split)],
// the column's part unpacked once per column an invocation stores rather than per element.
fn c_column(col: u32) -> u32 {
    switch MODE {
        case 1u: {
            // col = (n, oy, ox) -> y[n, co, oy, ox]
            let hw = p.ho * p.wo;
            return (col / hw) * p.co * hw + col % hw;
        }
        case 2u: {
            // col = (n, jy - jy0, jx - jx0) -> dx[n, ci, stride jy + ry - pad, stride jx + rx - pad]
            let hw = p.hc * p.wc;
            let pix = col % hw;
            let y = (pix / p.wc + p.jy0) * p.stride + p.ry - p.pad;
            let x = (pix % p.wc + p.jx0) * p.stride + p.rx - p.pad;
            return (col / hw) * p.ci * p.h * p.w + y * p.w + x;
        }
        default: {
            return col;
        }
    }
}

fn c_row(row: u32, split: u32) -> u32 {
    switch MODE {
        case 1u: {
            return row * p.ho * p.wo;
        }
        case 2u: {
            return row * p.h * p.w;
        }
        default: {
            return (split * p.m + row) * p.n;
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
