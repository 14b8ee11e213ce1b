//! The GEMM variant for software adapters with subgroups (lavapipe), generated as WGSL: matmul
//! in every transposition and the three passes of a convolution as implicit GEMMs.
//!
//! On llvmpipe every storage-buffer load runs as a scalar loop over the SIMD lanes with a bounds
//! check per element, so loads, not FMAs, bound a GEMM; loads by inactive lanes are skipped and
//! subgroup broadcasts are register shuffles. So each subgroup (a workgroup is one subgroup)
//! computes a tile of C, at most 32 rows (64 for 16 lanes) by 16 columns per lane (`Tile`), in
//! which every lane loads rows / SG rows of A and broadcasts them to the others, while keeping
//! its own columns of B: in the large tile for 8 lanes, per step of 4 along K a lane loads 4 +
//! 16 groups of 4 values for 512 FMAs. `subgroupBroadcast` needs a constant lane, and the driver
//! does not unroll loops of this size, so the source is generated unrolled. Convolutions read
//! their geometry from the uniform buffer, so one pipeline serves every layer: per-row and
//! per-column index terms are computed before the K loop, and K is walked by counters rather
//! than divisions.
//!
//! Bindings: 0 params ({m, n, k} for matmul; for convolutions the geometry, the K chunk of a
//! split-K weight gradient and the parity class of an input gradient, see conv2d.rs), 1 a, 2 b,
//! 3 c (written). Matmul binds vec4 arrays (row-major; A [M,K] or [K,M] transposed, B [K,N] or
//! [N,K]) and needs K % 4 == 0, N % 4 == 0, and M % 4 == 0 when A is transposed; convolutions bind
//! f32 arrays and take any shape. Dispatch: (ceil(N / tile columns), ceil(M / tile rows), splits
//! of K (convolutions only)). Rows and columns past the edge load clamped or zero values and are
//! never stored.
//!
//! The same generator makes the variant hardware GPUs time against the tiled kernels
//! (`Accumulation::InOrder`, `Tile::in_order`): one fused multiply-add per K in order, so it
//! computes their bits, and a tile small enough for a GPU's registers. Where a subgroup is wider
//! than the tile's rows (32 or 64 lanes, 16 rows), the lanes past them load rows they never
//! broadcast.

use std::fmt::Write;

use super::conv2d::ConvPass;

/// The part of C one subgroup computes: `rows` rows, and `col4` vec4 columns per lane.
///
/// A lane's B loads serve every row of the tile, so large tiles load least per FMA; but a GEMM
/// with few rows or columns (a stem with 3 input channels, a narrow network's 8 or 16
/// channels) would spend most of a large tile's FMAs and lanes on rows and columns past its
/// edge, so convolutions take the smallest tile that covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub rows: usize,
    pub col4: usize,
}

impl Tile {
    /// The tile of every matmul and of convolutions large in both directions: 32 rows, or 4
    /// per lane where subgroups are wider than 8 (a transposed A is loaded 4 rows at a time).
    /// Not 64 rows for 8 lanes: llvmpipe took 9 s to compile each such kernel (40 of the 60 s
    /// before the quick step's first step with an empty shader cache), and they ran slower,
    /// their 1,024 accumulators a lane spilling (lavapipe, 2026-12-03: matmul 1024^3 48.5
    /// against 56.7 GFLOP/s, the small step at batch 16 0.43 against 2.9 images/s). 16 rows
    /// ran the small step slower.
    pub fn large(subgroup_size: usize) -> Tile {
        Tile {
            rows: (4 * subgroup_size).max(32),
            col4: 4,
        }
    }

    /// The smallest tile (rows a power of two from the subgroup size to the large tile's, 1 to
    /// 4 vec4 columns per lane) that covers an M x N convolution GEMM, or as much of it as the
    /// large tile does.
    pub fn covering(subgroup_size: usize, m: usize, n: usize) -> Tile {
        let large = Self::large(subgroup_size);
        Tile {
            rows: m.next_power_of_two().clamp(subgroup_size, large.rows),
            col4: n.div_ceil(4 * subgroup_size).clamp(1, large.col4),
        }
    }

    /// The tile of `Accumulation::InOrder` on any subgroup size: 16 rows by 8 columns per
    /// lane, 128 accumulators (a hardware GPU's registers hold them; 32 x 4 would make them
    /// load twice as many B elements per broadcast, 8 x 16 broadcast twice as often).
    pub fn in_order() -> Tile {
        Tile { rows: 16, col4: 2 }
    }

    /// Columns of C per workgroup (one subgroup; its rows are `rows`).
    pub fn columns_per_workgroup(&self, subgroup_size: usize) -> usize {
        subgroup_size * self.col4 * 4
    }
}

/// How a lane adds its products into C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulation {
    /// The products of four consecutive K summed, then added (a mat4x4 times a vec4): the
    /// fastest on llvmpipe.
    Fours,
    /// One fused multiply-add per K in order, as the tiled kernels accumulate: the variant a
    /// hardware GPU times against them (`Gpu::fastest`), which must compute their bits.
    InOrder,
}

/// What the GEMM multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmKind {
    Matmul {
        trans_a: bool,
        trans_b: bool,
    },
    /// A convolution pass; its geometry comes from the uniform buffer.
    Conv(ConvPass),
    /// The weight gradient computed transposed: rows are the filter taps (ci, ky, kx), columns
    /// the output channels, stored into dw [Co, Ci*Kh*Kw]. Lanes own columns, so a layer with
    /// fewer taps than channels (the stem: 27 taps, 64 channels) keeps more lanes busy this way.
    /// Bindings as for the weight gradient (a = dy, b = x).
    ConvWeightGradByTaps,
}

impl GemmKind {
    /// A name that identifies the generated source.
    pub fn cache_name(&self, subgroup_size: usize, tile: Tile, sum: Accumulation) -> String {
        let kind = match self {
            GemmKind::Matmul { trans_a, trans_b } => format!(
                "gemm_subgroup_{subgroup_size}_matmul_{}{}",
                u8::from(*trans_a),
                u8::from(*trans_b)
            ),
            GemmKind::Conv(pass) => format!("gemm_subgroup_{subgroup_size}_{pass:?}"),
            GemmKind::ConvWeightGradByTaps => {
                format!("gemm_subgroup_{subgroup_size}_GradWeightByTaps")
            }
        };
        let order = match sum {
            Accumulation::Fours => "",
            Accumulation::InOrder => "_in_order",
        };
        format!("{kind}_{}x{}{order}", tile.rows, tile.col4)
    }
}

/// The pipeline key of the generated kernel.
pub fn key(
    subgroup_size: usize,
    kind: GemmKind,
    tile: Tile,
    sum: Accumulation,
) -> crate::gpu::KernelKey {
    crate::gpu::KernelKey::generated(kind.cache_name(subgroup_size, tile, sum), || {
        source(subgroup_size, kind, tile, sum)
    })
}

/// Each lane of the large tile loads 4 or more rows of A, in groups of 4 when a matmul's A is
/// transposed.
pub fn supports_subgroup_size(sg: usize) -> bool {
    matches!(sg, 4 | 8 | 16)
}

/// The subgroup sizes `Accumulation::InOrder` runs on.
pub fn in_order_supports_subgroup_size(sg: usize) -> bool {
    matches!(sg, 4 | 8 | 16 | 32 | 64)
}

const BINDINGS_VEC4: &str = "struct Params { m: u32, n: u32, k: u32, _pad: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
";

/// Bindings and element functions of the convolution passes; geometry comes from the uniform
/// `Params` (the layout of gemm_operands.wgsl).
const CONV_PRELUDE: &str = "struct Params { m: u32, n: u32, k: u32, batch: u32, ci: u32, h: u32, w: u32, co: u32, ho: u32, wo: u32, kh: u32, kw: u32, stride: u32, pad: u32,
    // K per split (workgroup z computes [z chunk, (z + 1) chunk) into the z-th slice of C); 0: all.
    chunk: u32, _pad1: u32,
    // The input gradient's parity class (see conv2d.rs): residues, first index, extent, taps.
    ry: u32, rx: u32, jy0: u32, jx0: u32, hc: u32, wc: u32, th: u32, tw: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// a[i] where ok, else 0. A branch, not a select: llvmpipe skips the loads of lanes that do
// not take it, and loads are what this kernel is bound by.
fn a_or_zero(i: i32, ok: bool) -> f32 {
    var v = 0.0;
    if (ok) {
        v = a[i];
    }
    return v;
}
fn b_or_zero(i: i32, ok: bool) -> f32 {
    var v = 0.0;
    if (ok) {
        v = b[i];
    }
    return v;
}
// dy[base + oy * Wo + ox], zero outside the output.
fn dy_at(base: i32, oy: i32, ox: i32, ok: bool) -> f32 {
    return b_or_zero(base + oy * i32(p.wo) + ox, ok && oy >= 0 && ox >= 0 && oy < i32(p.ho) && ox < i32(p.wo));
}
// The input pixel at (y, x) of the plane starting at `base`, zero in the padding.
fn pixel(base: i32, y: i32, x: i32, ok: bool) -> f32 {
    let h = i32(p.h);
    let w = i32(p.w);
    return b_or_zero(base + y * w + x, ok && y >= 0 && x >= 0 && y < h && x < w);
}
";

/// How one convolution pass addresses its operands, as WGSL snippets of the unrolled kernel.
/// K is walked by three counters (k2, k1, k0) with k1 < lim1 and k0 < lim0, so no division
/// runs inside the K loop; per-row and per-column terms are computed once before it.
struct ConvSnippets {
    /// The limits of k1 and k0.
    limits: (&'static str, &'static str),
    /// Per column {c} (column, col_ok, cc = the clamped column given).
    col_setup: &'static str,
    /// Per row {r} (row, row_ok given).
    row_setup: &'static str,
    /// Per k value {kk} from k2{kk}, k1{kk}, k0{kk}, k_ok{kk}.
    k_setup: &'static str,
    /// A[row {r}, k {kk}].
    a_elem: &'static str,
    /// B[k {kk}, column {c}].
    b_elem: &'static str,
    /// The index in C of (row {row}, column {c}).
    c_index: &'static str,
}

fn conv_snippets(pass: ConvPass) -> ConvSnippets {
    match pass {
        // A = weight [Co, (ci, ky, kx)]; B = patches [(ci, ky, kx), (n, oy, ox)]; C = y [n, co, oy, ox].
        ConvPass::Forward => ConvSnippets {
            limits: ("i32(p.kh)", "i32(p.kw)"),
            col_setup: "let n{c} = cc{c} / hwo; let pix{c} = cc{c} % hwo; let base{c} = n{c} * i32(p.ci) * hw; let iy{c} = (pix{c} / i32(p.wo)) * i32(p.stride) - i32(p.pad); let ix{c} = (pix{c} % i32(p.wo)) * i32(p.stride) - i32(p.pad); let out{c} = n{c} * i32(p.co) * hwo + pix{c};",
            row_setup: "let rowoff{r} = row{r} * i32(p.k);",
            k_setup: "let koff{kk} = k2{kk} * hw;",
            a_elem: "a_or_zero(rowoff{r} + kidx{kk}, row_ok{r} && k_ok{kk})",
            b_elem: "pixel(base{c} + koff{kk}, iy{c} + k1{kk}, ix{c} + k0{kk}, col_ok{c} && k_ok{kk})",
            c_index: "out{c} + {row} * hwo",
        },
        // One parity class of dx (see conv2d.rs): A = weight seen as [Ci, (co, ty, tx)] at taps
        // ky = ry + stride ty; B = dy at (jy - ty, jx - tx); C = dx [n, ci, y, x].
        ConvPass::GradInput => ConvSnippets {
            limits: ("i32(p.th)", "i32(p.tw)"),
            col_setup: "let n{c} = cc{c} / i32(p.hc * p.wc); let pix{c} = cc{c} % i32(p.hc * p.wc); let jy{c} = pix{c} / i32(p.wc) + i32(p.jy0); let jx{c} = pix{c} % i32(p.wc) + i32(p.jx0); let base{c} = n{c} * i32(p.co) * hwo; let out{c} = n{c} * i32(p.ci) * hw + (jy{c} * i32(p.stride) + i32(p.ry) - i32(p.pad)) * i32(p.w) + jx{c} * i32(p.stride) + i32(p.rx) - i32(p.pad);",
            row_setup: "let rowoff{r} = row{r} * taps;",
            k_setup: "let ka{kk} = k2{kk} * i32(p.ci) * taps + (i32(p.ry) + k1{kk} * i32(p.stride)) * i32(p.kw) + i32(p.rx) + k0{kk} * i32(p.stride); let koff{kk} = k2{kk} * hwo;",
            a_elem: "a_or_zero(ka{kk} + rowoff{r}, row_ok{r} && k_ok{kk})",
            b_elem: "dy_at(base{c} + koff{kk}, jy{c} - k1{kk}, jx{c} - k0{kk}, col_ok{c} && k_ok{kk})",
            c_index: "out{c} + {row} * hw",
        },
        // A = dy seen as [Co, (n, oy, ox)]; B = patches transposed [(n, oy, ox), (ci, ky, kx)];
        // C = dw [co, (ci, ky, kx)].
        ConvPass::GradWeight => ConvSnippets {
            limits: ("i32(p.ho)", "i32(p.wo)"),
            col_setup: "let cioff{c} = (cc{c} / taps) * hw; let ky{c} = (cc{c} % taps) / i32(p.kw); let kx{c} = cc{c} % i32(p.kw);",
            row_setup: "let rowoff{r} = row{r} * hwo;",
            k_setup: "let ka{kk} = k2{kk} * i32(p.co) * hwo + k1{kk} * i32(p.wo) + k0{kk}; let kb{kk} = k2{kk} * i32(p.ci) * hw; let iy{kk} = k1{kk} * i32(p.stride) - i32(p.pad); let ix{kk} = k0{kk} * i32(p.stride) - i32(p.pad);",
            a_elem: "a_or_zero(ka{kk} + rowoff{r}, row_ok{r} && k_ok{kk})",
            b_elem: "pixel(kb{kk} + cioff{c}, iy{kk} + ky{c}, ix{kk} + kx{c}, col_ok{c} && k_ok{kk})",
            c_index: "i32(wid.z * p.m * p.n) + {row} * i32(p.n) + column{c}",
        },
    }
}

/// See `GemmKind::ConvWeightGradByTaps`: A = patches [(ci, ky, kx), (n, oy, ox)] (read from b),
/// B = dy seen as [(n, oy, ox), Co] (read from a), C = dw [co, (ci, ky, kx)].
fn weight_grad_by_taps_snippets() -> ConvSnippets {
    ConvSnippets {
        limits: ("i32(p.ho)", "i32(p.wo)"),
        col_setup: "let cooff{c} = cc{c} * hwo;",
        row_setup: "let rr{r} = min(row{r}, i32(p.m) - 1); let cioff{r} = (rr{r} / taps) * hw; let ky{r} = (rr{r} % taps) / i32(p.kw); let kx{r} = rr{r} % i32(p.kw);",
        k_setup: "let kdy{kk} = k2{kk} * i32(p.co) * hwo + k1{kk} * i32(p.wo) + k0{kk}; let kb{kk} = k2{kk} * i32(p.ci) * hw; let iy{kk} = k1{kk} * i32(p.stride) - i32(p.pad); let ix{kk} = k0{kk} * i32(p.stride) - i32(p.pad);",
        a_elem: "pixel(kb{kk} + cioff{r}, iy{kk} + ky{r}, ix{kk} + kx{r}, row_ok{r} && k_ok{kk})",
        b_elem: "a_or_zero(kdy{kk} + cooff{c}, col_ok{c} && k_ok{kk})",
        c_index: "i32(wid.z * p.m * p.n) + column{c} * i32(p.m) + {row}",
    }
}

/// The kernel's WGSL for one subgroup size, GEMM, tile and accumulation (matmuls take the
/// large tile, or `Tile::in_order` without a transposed A).
pub fn source(subgroup_size: usize, kind: GemmKind, tile: Tile, sum: Accumulation) -> String {
    let sg = subgroup_size;
    match sum {
        Accumulation::Fours => {
            assert!(supports_subgroup_size(sg), "unsupported subgroup size {sg}");
            assert!(
                tile.rows.is_multiple_of(sg)
                    && tile.rows <= Tile::large(sg).rows
                    && (1..=4).contains(&tile.col4),
                "unsupported tile {tile:?} for subgroup size {sg}"
            );
            assert!(
                tile == Tile::large(sg)
                    || matches!(kind, GemmKind::Conv(_) | GemmKind::ConvWeightGradByTaps),
                "matmuls take the large tile"
            );
        }
        Accumulation::InOrder => {
            assert!(
                in_order_supports_subgroup_size(sg),
                "unsupported subgroup size {sg}"
            );
            assert!(
                (tile.rows.is_multiple_of(sg) || sg.is_multiple_of(tile.rows))
                    && (1..=4).contains(&tile.col4),
                "unsupported tile {tile:?} for subgroup size {sg}"
            );
            assert!(
                !matches!(kind, GemmKind::Matmul { trans_a: true, .. }) || tile.rows >= 4 * sg,
                "a transposed A loads 4 rows a lane"
            );
        }
    }
    let Tile { rows, col4 } = tile;
    // Rows of A each lane loads: lanes past the tile's rows (wide subgroups) load rows they
    // never broadcast.
    let q = (rows / sg).max(1);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Generated by src/ops/gemm_subgroup.rs: subgroup size {sg}, {kind:?}, {sum:?}."
    );
    match kind {
        GemmKind::Matmul { .. } => w.push_str(BINDINGS_VEC4),
        GemmKind::Conv(_) | GemmKind::ConvWeightGradByTaps => w.push_str(CONV_PRELUDE),
    }
    let _ = writeln!(
        w,
        "@compute @workgroup_size({sg}, 1, 1)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {{"
    );
    let _ = writeln!(w, "  let row = wid.y * {rows}u;");
    let _ = writeln!(w, "  let col4 = (wid.x * {sg}u + lane) * {col4}u;");
    let _ = writeln!(w, "  let own_row = row + lane * {q}u;");
    if let GemmKind::Matmul { .. } = kind {
        // vec4 counts along each matrix's rows, and this lane's vec4 columns of B.
        w.push_str("  let k4 = p.k / 4u;\n  let n4 = p.n / 4u;\n  let m4 = p.m / 4u;\n");
        for j in 0..col4 {
            let _ = writeln!(w, "  let bc{j} = min(col4 + {j}u, n4 - 1u);");
        }
    }
    for i in 0..rows {
        for j in 0..col4 {
            let _ = writeln!(w, "  var acc{i}_{j} = vec4<f32>();");
        }
    }
    let conv = match kind {
        GemmKind::Conv(pass) => Some(conv_snippets(pass)),
        GemmKind::ConvWeightGradByTaps => Some(weight_grad_by_taps_snippets()),
        GemmKind::Matmul { .. } => None,
    };
    if let Some(sn) = &conv {
        conv_setup(w, q, col4, sn);
    }
    if conv.is_some() {
        w.push_str("  for (var k = k_begin; k < k_end; k += 4u) {\n");
    } else {
        w.push_str("  for (var k = 0u; k < p.k; k += 4u) {\n    let kc = k / 4u;\n");
    }
    match (kind, &conv) {
        (GemmKind::Matmul { trans_a, trans_b }, _) => matmul_loads(w, q, col4, trans_a, trans_b),
        (_, Some(sn)) => conv_loads(w, q, col4, sn),
        (_, None) => unreachable!(),
    }
    for i in 0..rows {
        let _ = writeln!(
            w,
            "    let a{i} = subgroupBroadcast(own{}, {}u);",
            i % q,
            i / q
        );
        for j in 0..col4 {
            match sum {
                Accumulation::Fours => {
                    let _ = writeln!(w, "    acc{i}_{j} += bm{j} * a{i};");
                }
                Accumulation::InOrder => {
                    for kk in 0..4 {
                        let _ = writeln!(
                            w,
                            "    acc{i}_{j} = fma(vec4<f32>(a{i}[{kk}]), bm{j}[{kk}], acc{i}_{j});"
                        );
                    }
                }
            }
        }
    }
    w.push_str("  }\n");
    for i in 0..rows {
        let _ = writeln!(w, "  if (row + {i}u < p.m) {{");
        for j in 0..col4 {
            match kind {
                GemmKind::Matmul { .. } => {
                    let _ = writeln!(w, "    if (col4 + {j}u < n4) {{ c[(row + {i}u) * n4 + col4 + {j}u] = acc{i}_{j}; }}");
                }
                GemmKind::Conv(..) | GemmKind::ConvWeightGradByTaps => {
                    let sn = conv.as_ref().unwrap();
                    for e in 0..4 {
                        let col = 4 * j + e;
                        let index = fill(sn.c_index, &[("{c}", col)])
                            .replace("{row}", &format!("i32(row + {i}u)"));
                        let _ = writeln!(
                            w,
                            "    if (col_ok_c{col}) {{ c[{index}] = acc{i}_{j}[{e}]; }}"
                        );
                    }
                }
            }
        }
        w.push_str("  }\n");
    }
    w.push_str("}\n");
    s
}

/// own{r} = A[own_row + r, k..k+4] and bm{j} (column kk = B[k + kk, 4 (col4 + j)..]) from vec4 arrays.
fn matmul_loads(w: &mut String, q: usize, col4: usize, trans_a: bool, trans_b: bool) {
    if trans_a {
        for g in 0..q.div_ceil(4) {
            let r = format!("min(own_row / 4u + {g}u, m4 - 1u)");
            let _ = writeln!(w, "    let at{g} = transpose(mat4x4<f32>(a[k * m4 + {r}], a[(k + 1u) * m4 + {r}], a[(k + 2u) * m4 + {r}], a[(k + 3u) * m4 + {r}]));");
        }
        for r in 0..q {
            let _ = writeln!(w, "    let own{r} = at{}[{}];", r / 4, r % 4);
        }
    } else {
        for r in 0..q {
            let _ = writeln!(
                w,
                "    let own{r} = a[min(own_row + {r}u, p.m - 1u) * k4 + kc];"
            );
        }
    }
    for j in 0..col4 {
        if trans_b {
            let n = |t: usize| format!("b[min(bc{j} * 4u + {t}u, p.n - 1u) * k4 + kc]");
            let _ = writeln!(
                w,
                "    let bm{j} = transpose(mat4x4<f32>({}, {}, {}, {}));",
                n(0),
                n(1),
                n(2),
                n(3)
            );
        } else {
            let _ = writeln!(w, "    let bm{j} = mat4x4<f32>(b[k * n4 + bc{j}], b[(k + 1u) * n4 + bc{j}], b[(k + 2u) * n4 + bc{j}], b[(k + 3u) * n4 + bc{j}]);");
        }
    }
}

/// `template` with each placeholder ({c} column, {r} row, {kk} k offset) replaced by a suffix
/// that no other name of the kernel ends in.
fn fill(template: &str, values: &[(&str, usize)]) -> String {
    values.iter().fold(template.to_string(), |t, (k, v)| {
        let tag = &k[1..k.len() - 1];
        t.replace(k, &format!("_{tag}{v}"))
    })
}

/// Per-row and per-column terms of a convolution pass, and the K counters at zero.
fn conv_setup(w: &mut String, q: usize, col4: usize, sn: &ConvSnippets) {
    w.push_str("  let hw = i32(p.h * p.w);\n  let hwo = i32(p.ho * p.wo);\n  let taps = i32(p.kh * p.kw);\n");
    for c in 0..col4 * 4 {
        let setup = format!("let column{{c}} = i32(col4 * 4u + {c}u); let col_ok{{c}} = column{{c}} < i32(p.n); let cc{{c}} = min(column{{c}}, i32(p.n) - 1); {}", sn.col_setup);
        let _ = writeln!(w, "  {}", fill(&setup, &[("{c}", c)]));
    }
    for r in 0..q {
        let setup = format!(
            "let row{{r}} = i32(own_row + {r}u); let row_ok{{r}} = row{{r}} < i32(p.m); {}",
            sn.row_setup
        );
        let _ = writeln!(w, "  {}", fill(&setup, &[("{r}", r)]));
    }
    let (lim1, lim0) = sn.limits;
    let _ = writeln!(
        w,
        "  let chunk = select(p.chunk, p.k, p.chunk == 0u);\n  let k_begin = wid.z * chunk;\n  let k_end = min(p.k, k_begin + chunk);\n  var k2 = 0;\n  var k1 = 0;\n  var k0 = 0;\n  if (k_begin > 0u) {{\n    let kb = i32(k_begin);\n    k2 = kb / ({lim1} * {lim0});\n    k1 = (kb / {lim0}) % {lim1};\n    k0 = kb % {lim0};\n  }}"
    );
}

/// The operands element by element through the pass's snippets; the counters advance by 4.
fn conv_loads(w: &mut String, q: usize, col4: usize, sn: &ConvSnippets) {
    let (lim1, lim0) = sn.limits;
    w.push_str("    let ki = i32(k);\n");
    for kk in 0..4 {
        let setup = format!("let k2{{kk}} = k2; let k1{{kk}} = k1; let k0{{kk}} = k0; let kidx{{kk}} = ki + {kk}; let k_ok{{kk}} = kidx{{kk}} < i32(k_end); {}", sn.k_setup);
        let _ = writeln!(w, "    {}", fill(&setup, &[("{kk}", kk)]));
        let _ = writeln!(w, "    k0 += 1;\n    if (k0 == {lim0}) {{ k0 = 0; k1 += 1; }}\n    if (k1 == {lim1}) {{ k1 = 0; k2 += 1; }}");
    }
    for r in 0..q {
        let elems: Vec<String> = (0..4)
            .map(|kk| fill(sn.a_elem, &[("{r}", r), ("{kk}", kk)]))
            .collect();
        let _ = writeln!(w, "    let own{r} = vec4<f32>({});", elems.join(", "));
    }
    for j in 0..col4 {
        let columns: Vec<String> = (0..4)
            .map(|kk| {
                let elems: Vec<String> = (0..4)
                    .map(|e| fill(sn.b_elem, &[("{kk}", kk), ("{c}", 4 * j + e)]))
                    .collect();
                format!("vec4<f32>({})", elems.join(", "))
            })
            .collect();
        let _ = writeln!(w, "    let bm{j} = mat4x4<f32>({});", columns.join(", "));
    }
}
