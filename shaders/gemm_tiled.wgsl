// gemm_tiled: C[M,N] = A[M,K] B[K,N] through 64x64 workgroup tiles; gemm_operands.wgsl (prepended)
// says what A, B and C are in each MODE and binds them.
// Dispatch: (ceil(N/64), ceil(M/64), splits); workgroup 16x16; each invocation computes 4x4 outputs
// strided by 16 inside the tile. K advances in steps of 16 through workgroup memory. Stores
// outside C are skipped. The variant for GPUs with fast workgroup memory and for GEMMs too small
// to fill gemm_tiled_large's 128x128 tiles.

const TILE: u32 = 64u;
const BK: u32 = 16u;

// Both tiles are stored k-major: tile_a[kk * TILE + row], tile_b[kk * TILE + col].
var<workgroup> tile_a: array<f32, 1024>;
var<workgroup> tile_b: array<f32, 1024>;

// The K offset and the first row (or column) of the 4 elements, 16 apart, that invocation tid
// loads per step: consecutive invocations walk the operand's contiguous axis (coalesced loads).
fn tile_slot(tid: u32, k_major: bool) -> vec2<u32> {
    if (k_major) {
        return vec2<u32>(tid / 16u, tid % 16u);
    }
    return vec2<u32>(tid % 16u, tid / 16u);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let chunk = select(p.chunk, p.k, p.chunk == 0u);
    let k_begin = wid.z * chunk;
    let k_end = min(p.k, k_begin + chunk);
    // The invocation loads A's rows sa.y + 16 i at K offset sa.x of each step, and B's columns
    // sb.y + 16 i at sb.x; their fixed index parts are computed once.
    let sa = tile_slot(tid, a_is_k_major());
    let sb = tile_slot(tid, b_is_k_major());
    var fa: array<Part, 4>;
    var fb: array<Part, 4>;
    for (var i = 0u; i < 4u; i++) {
        fa[i] = a_fixed(row0 + sa.y + 16u * i);
        fb[i] = b_fixed(col0 + sb.y + 16u * i);
    }
    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        let ma = a_moving(k0 + sa.x, k_end);
        let mb = b_moving(k0 + sb.x, k_end);
        for (var i = 0u; i < 4u; i++) {
            tile_a[sa.x * TILE + sa.y + 16u * i] = gather_a(fa[i], ma);
            tile_b[sb.x * TILE + sb.y + 16u * i] = gather_b(fb[i], mb);
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
    // cols[j]: where column lid.x + 16 j of the tile goes in C.
    var cols: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        cols[j] = c_column(col0 + lid.x + 16u * j);
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        if (row < p.m) {
            let base = c_row(row, wid.z);
            for (var j = 0u; j < 4u; j++) {
                if (col0 + lid.x + 16u * j < p.n) {
                    c[base + cols[j]] = acc[i][j];
                }
            }
        }
    }
}
