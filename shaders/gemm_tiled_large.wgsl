// gemm_tiled_large: C[M,N] = A[M,K] B[K,N] through 128x128 workgroup tiles, double-buffered;
// gemm_operands.wgsl (prepended) says what A, B and C are in each MODE and binds them.
// Dispatch: (ceil(N/128), ceil(M/128), splits); workgroup 16x16; invocation (x, y) computes the
// 8x8 outputs at tile rows 4y..4y+3 and 64+4y..64+4y+3, columns 4x..4x+3 and 64+4x..64+4x+3, so
// that it reads A and B from workgroup memory as four vec4 per step of K (64 FMAs).
// K advances in steps of 8: while the workgroup multiplies one pair of tiles, each invocation
// holds its share of the next pair in registers (loaded before the products, stored after), so
// the global loads' latency hides behind the arithmetic and one barrier a step suffices.
// Workgroup memory: 2 buffers x 2 operands x 8 x 128 floats = 16 KiB, WebGPU's guaranteed
// minimum. Stores outside C are skipped. The variant for GPUs whose GEMMs fill 128x128 tiles.

const TILE: u32 = 128u;
const BK: u32 = 8u;
// vec4 per row of K in a tile, and per buffer.
const TILE4: u32 = 32u;
const BUFFER4: u32 = 256u;

// Both tiles k-major in vec4 of 4 rows (4 columns): tile_a[buffer + kk * TILE4 + row / 4].
var<workgroup> tile_a: array<vec4<f32>, 512>;
var<workgroup> tile_b: array<vec4<f32>, 512>;

// One invocation's share of a pair of tiles: 4 consecutive rows of A at one kk and 4
// consecutive columns of B at one kk.
struct Stage {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Which kk and which group of 4 rows (or columns) invocation tid loads: consecutive invocations
// walk the operand's contiguous axis.
fn stage_slot(tid: u32, k_major: bool) -> vec2<u32> {
    if (k_major) {
        return vec2<u32>(tid / TILE4, tid % TILE4);
    }
    return vec2<u32>(tid % BK, tid / BK);
}

// The operand parts an invocation's loads keep for the whole K loop: A's rows row0 + 4 sa.y + i
// and B's columns col0 + 4 sb.y + i, read at K offsets sa.x and sb.x of each step.
struct Slots {
    a: array<Part, 4>,
    b: array<Part, 4>,
    ka: u32,
    kb: u32,
}

fn slots(tid: u32, row0: u32, col0: u32) -> Slots {
    let sa = stage_slot(tid, a_is_k_major());
    let sb = stage_slot(tid, b_is_k_major());
    var s: Slots;
    s.ka = sa.x;
    s.kb = sb.x;
    for (var i = 0u; i < 4u; i++) {
        s.a[i] = a_fixed(row0 + 4u * sa.y + i);
        s.b[i] = b_fixed(col0 + 4u * sb.y + i);
    }
    return s;
}

fn load_stage(s: Slots, k0: u32, k_end: u32) -> Stage {
    let ma = a_moving(k0 + s.ka, k_end);
    let mb = b_moving(k0 + s.kb, k_end);
    var st: Stage;
    for (var i = 0u; i < 4u; i++) {
        st.a[i] = gather_a(s.a[i], ma);
        st.b[i] = gather_b(s.b[i], mb);
    }
    return st;
}

fn store_stage(tid: u32, buffer: u32, s: Stage) {
    let sa = stage_slot(tid, a_is_k_major());
    let sb = stage_slot(tid, b_is_k_major());
    tile_a[buffer + sa.x * TILE4 + sa.y] = s.a;
    tile_b[buffer + sb.x * TILE4 + sb.y] = s.b;
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let chunk = select(p.chunk, p.k, p.chunk == 0u);
    let k_begin = wid.z * chunk;
    let k_end = min(p.k, k_begin + chunk);
    // acc[2 r + h]: row r of the invocation's 8 (4y + r, then 64 + 4y + r - 4), column half h.
    var acc: array<vec4<f32>, 16>;
    var buffer = 0u;
    let own = slots(tid, row0, col0);
    if (k_begin < k_end) {
        store_stage(tid, 0u, load_stage(own, k_begin, k_end));
    }
    workgroupBarrier();
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        let more = k0 + BK < k_end;
        var next: Stage;
        if (more) {
            next = load_stage(own, k0 + BK, k_end);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let base = buffer + kk * TILE4;
            let a_lo = tile_a[base + lid.y];
            let a_hi = tile_a[base + 16u + lid.y];
            let b_lo = tile_b[base + lid.x];
            let b_hi = tile_b[base + 16u + lid.x];
            for (var r = 0u; r < 4u; r++) {
                acc[2u * r] = fma(vec4<f32>(a_lo[r]), b_lo, acc[2u * r]);
                acc[2u * r + 1u] = fma(vec4<f32>(a_lo[r]), b_hi, acc[2u * r + 1u]);
                acc[2u * r + 8u] = fma(vec4<f32>(a_hi[r]), b_lo, acc[2u * r + 8u]);
                acc[2u * r + 9u] = fma(vec4<f32>(a_hi[r]), b_hi, acc[2u * r + 9u]);
            }
        }
        // The other buffer was last read before the previous step's barrier.
        if (more) {
            store_stage(tid, BUFFER4 - buffer, next);
        }
        workgroupBarrier();
        buffer = BUFFER4 - buffer;
    }
    // cols[4 h + j]: where column 64 h + 4x + j of the tile goes in C.
    var cols: array<u32, 8>;
    for (var h = 0u; h < 2u; h++) {
        for (var j = 0u; j < 4u; j++) {
            cols[4u * h + j] = c_column(col0 + 64u * h + 4u * lid.x + j);
        }
    }
    for (var r = 0u; r < 8u; r++) {
        let row = row0 + 4u * lid.y + r % 4u + 64u * (r / 4u);
        if (row < p.m) {
            let base = c_row(row, wid.z);
            for (var h = 0u; h < 2u; h++) {
                for (var j = 0u; j < 4u; j++) {
                    if (col0 + 64u * h + 4u * lid.x + j < p.n) {
                        c[base + cols[4u * h + j]] = acc[2u * r + h][j];
                    }
                }
            }
        }
    }
}
