// matmul_vec4: C[M,N] = op(A) op(B), register-blocked, without workgroup memory or barriers.
// Storage is row-major: A is [M,K] ([K,M] when TRANS_A), B is [K,N] ([N,K] when TRANS_B).
// Requires K % 4 == 0, N % 4 == 0, and M % 4 == 0 when TRANS_A (the host checks).
// Bindings: 0 params {m, n, k}, 1 a, 2 b, 3 c (written), all as vec4 arrays.
// Dispatch: (ceil(N/128), ceil(M/64), 1); workgroup 8x8; each invocation computes 8 rows x 16
// columns, held as 2x4 mat4x4 accumulators whose columns are 4-wide pieces of C's rows.
// Per step of 4 along K: 8 vec4 loads of A, 16 of B, 512 FMAs, all as mat4x4 products.
// Rows and columns past the matrix edge load clamped (in-bounds) values and are never stored.
// The variant for software adapters (lavapipe), where workgroup memory and barriers cost more
// than they save.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

// Four consecutive rows of op(A) at k..k+4: column i holds A[row + i, k..k+4].
fn a_rows(row: u32, k: u32) -> mat4x4<f32> {
    if (TRANS_A) {
        // A^T is stored [K,M]: a vec4 along M holds one k for four rows.
        let m4 = p.m / 4u;
        let r = min(row / 4u, m4 - 1u);
        return transpose(mat4x4<f32>(
            a[k * m4 + r],
            a[(k + 1u) * m4 + r],
            a[(k + 2u) * m4 + r],
            a[(k + 3u) * m4 + r],
        ));
    }
    let k4 = p.k / 4u;
    let kc = k / 4u;
    let last = p.m - 1u;
    return mat4x4<f32>(
        a[min(row, last) * k4 + kc],
        a[min(row + 1u, last) * k4 + kc],
        a[min(row + 2u, last) * k4 + kc],
        a[min(row + 3u, last) * k4 + kc],
    );
}

// Rows k..k+4 of op(B) at the columns of vec4 `col4`: column kk holds B[k + kk, 4 col4 .. 4 col4 + 4].
fn b_rows(k: u32, col4: u32) -> mat4x4<f32> {
    if (TRANS_B) {
        // B^T is stored [N,K]: a vec4 along K holds four k for one column.
        let k4 = p.k / 4u;
        let kc = k / 4u;
        let last = p.n - 1u;
        let n0 = col4 * 4u;
        return transpose(mat4x4<f32>(
            b[min(n0, last) * k4 + kc],
            b[min(n0 + 1u, last) * k4 + kc],
            b[min(n0 + 2u, last) * k4 + kc],
            b[min(n0 + 3u, last) * k4 + kc],
        ));
    }
    let n4 = p.n / 4u;
    let cc = min(col4, n4 - 1u);
    return mat4x4<f32>(
        b[k * n4 + cc],
        b[(k + 1u) * n4 + cc],
        b[(k + 2u) * n4 + cc],
        b[(k + 3u) * n4 + cc],
    );
}

fn store(row: u32, col4: u32, block: mat4x4<f32>) {
    let n4 = p.n / 4u;
    if (col4 >= n4) {
        return;
    }
    if (row < p.m) {
        c[row * n4 + col4] = block[0];
    }
    if (row + 1u < p.m) {
        c[(row + 1u) * n4 + col4] = block[1];
    }
    if (row + 2u < p.m) {
        c[(row + 2u) * n4 + col4] = block[2];
    }
    if (row + 3u < p.m) {
        c[(row + 3u) * n4 + col4] = block[3];
    }
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = (wid.y * 8u + lid.y) * 8u;
    let col4 = (wid.x * 8u + lid.x) * 4u;
    var c00 = mat4x4<f32>();
    var c01 = mat4x4<f32>();
    var c02 = mat4x4<f32>();
    var c03 = mat4x4<f32>();
    var c10 = mat4x4<f32>();
    var c11 = mat4x4<f32>();
    var c12 = mat4x4<f32>();
    var c13 = mat4x4<f32>();
    for (var k = 0u; k < p.k; k += 4u) {
        let a0 = a_rows(row, k);
        let a1 = a_rows(row + 4u, k);
        let b0 = b_rows(k, col4);
        let b1 = b_rows(k, col4 + 1u);
        let b2 = b_rows(k, col4 + 2u);
        let b3 = b_rows(k, col4 + 3u);
        c00 += b0 * a0;
        c01 += b1 * a0;
        c02 += b2 * a0;
        c03 += b3 * a0;
        c10 += b0 * a1;
        c11 += b1 * a1;
        c12 += b2 * a1;
        c13 += b3 * a1;
    }
    store(row, col4, c00);
    store(row, col4 + 1u, c01);
    store(row, col4 + 2u, c02);
    store(row, col4 + 3u, c03);
    store(row + 4u, col4, c10);
    store(row + 4u, col4 + 1u, c11);
    store(row + 4u, col4 + 2u, c12);
    store(row + 4u, col4 + 3u, c13);
}
