// gemm_tiled: C[M,N] = A[M,K] B[K,N] through 64x64 workgroup tiles, where MODE says what A, B
// and C are in memory (row-major, NCHW):
//   MODE 0, matmul: A is a ([K,M] when TRANS_A), B is b ([N,K] when TRANS_B), C is c.
//   MODE 1, conv2d forward: M = Co, N = batch*Ho*Wo, K = Ci*Kh*Kw; A = weight, B = the input's
//           patches (implicit im2col, zero outside the image), C = output.
//   MODE 2, conv2d backward to the input: M = Ci, N = batch*H*W, K = Co*Kh*Kw; A = weight seen as
//           [Ci, Co*Kh*Kw], B = the output gradient at the positions each input pixel reached.
//   MODE 3, conv2d backward to the weight: M = Co, N = Ci*Kh*Kw, K = batch*Ho*Wo; A = output
//           gradient as [Co, batch*Ho*Wo], B = the input's patches transposed.
// Bindings: 0 params, 1 a, 2 b, 3 c (written).
// Dispatch: (ceil(N/64), ceil(M/64), splits); workgroup 16x16; each invocation computes 4x4 outputs
// strided by 16 inside the tile. K advances in steps of 16 through workgroup memory. Loads
// outside the operands read zero; stores outside C are skipped. The variant for GPUs with fast
// workgroup memory.

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

const TILE: u32 = 64u;
const BK: u32 = 16u;

// Both tiles are stored k-major: tile_a[kk * TILE + row], tile_b[kk * TILE + col].
var<workgroup> tile_a: array<f32, 1024>;
var<workgroup> tile_b: array<f32, 1024>;

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

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    // Coalesced tile loads: consecutive invocations walk the operand's contiguous axis.
    let a_k_major = MODE == 0u && TRANS_A;
    let b_k_major = !(MODE == 0u && TRANS_B) && MODE != 3u;
    let chunk = select(p.chunk, p.k, p.chunk == 0u);
    let k_begin = wid.z * chunk;
    let k_end = min(p.k, k_begin + chunk);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var i = 0u; i < 4u; i++) {
            let idx = tid + i * 256u;
            var ra = idx / BK;
            var ka = idx % BK;
            if (a_k_major) {
                ra = idx % TILE;
                ka = idx / TILE;
            }
            tile_a[ka * TILE + ra] = load_a(row0 + ra, k0 + ka, k_end);
            var kb = idx % BK;
            var cb = idx / BK;
            if (b_k_major) {
                kb = idx / TILE;
                cb = idx % TILE;
            }
            tile_b[kb * TILE + cb] = load_b(k0 + kb, col0 + cb, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let base = kk * TILE;
            let bv = vec4<f32>(
                tile_b[base + lid.x],
                tile_b[base + lid.x + 16u],
                tile_b[base + lid.x + 32u],
                tile_b[base + lid.x + 48u],
            );
            acc[0] = fma(vec4<f32>(tile_a[base + lid.y]), bv, acc[0]);
            acc[1] = fma(vec4<f32>(tile_a[base + lid.y + 16u]), bv, acc[1]);
            acc[2] = fma(vec4<f32>(tile_a[base + lid.y + 32u]), bv, acc[2]);
            acc[3] = fma(vec4<f32>(tile_a[base + lid.y + 48u]), bv, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        if (row < p.m) {
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + lid.x + 16u * j;
                if (col < p.n) {
                    store_c(row, col, wid.z, acc[i][j]);
                }
            }
        }
    }
}
