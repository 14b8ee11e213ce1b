// matmul_tiled: C[M,N] = op(A) op(B), where op transposes A when TRANS_A and B when TRANS_B.
// Storage is row-major: A is [M,K] ([K,M] when TRANS_A), B is [K,N] ([N,K] when TRANS_B).
// Bindings: 0 params {m, n, k}, 1 a, 2 b, 3 c (written).
// Dispatch: (ceil(N/64), ceil(M/64), 1); workgroup 16x16; each invocation computes 4x4 outputs
// strided by 16 inside the workgroup's 64x64 tile. K advances in steps of 16 through workgroup
// memory. Any shape works: loads outside the matrices read zero, stores outside are skipped.
// The variant for GPUs with fast workgroup memory.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
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

fn load_a(row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) {
        return 0.0;
    }
    if (TRANS_A) {
        return a[kk * p.m + row];
    }
    return a[row * p.k + kk];
}

fn load_b(kk: u32, col: u32) -> f32 {
    if (kk >= p.k || col >= p.n) {
        return 0.0;
    }
    if (TRANS_B) {
        return b[col * p.k + kk];
    }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // 1024 elements per tile, 4 per invocation; consecutive invocations read consecutive
        // addresses of whichever layout the operand has.
        for (var i = 0u; i < 4u; i++) {
            let idx = tid + i * 256u;
            var ra = idx / BK;
            var ka = idx % BK;
            if (TRANS_A) {
                ra = idx % TILE;
                ka = idx / TILE;
            }
            tile_a[ka * TILE + ra] = load_a(row0 + ra, k0 + ka);
            var kb = idx / TILE;
            var cb = idx % TILE;
            if (TRANS_B) {
                kb = idx % BK;
                cb = idx / BK;
            }
            tile_b[kb * TILE + cb] = load_b(k0 + kb, col0 + cb);
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
                    c[row * p.n + col] = acc[i][j];
                }
            }
        }
    }
}
