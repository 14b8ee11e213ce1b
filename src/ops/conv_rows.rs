//! 3x3 stride-1 convolution passes with padding 1 over planes whose width is a multiple of 4,
//! on software adapters with subgroups (generated WGSL): the forward pass, the input gradient
//! and the weight gradient of every 3x3 layer but the strided ones in a ResNet on 32 x 32
//! images (conv2d.rs leaves the narrow passes to conv_direct.rs, and weight gradients with
//! fewer taps than output channels to the GEMM by taps).
//!
//! The GEMM of gemm_subgroup.rs gathers every element of its patch operand on its own, 9 loads
//! per input pixel, and on llvmpipe every storage load costs a scalar loop over the SIMD lanes.
//! Here the pixels move in runs of 4 along a row (the width is a multiple of 4, so a run never
//! leaves its row): for each input channel and kernel row a run's input segment and its left
//! and right neighbour runs load as three aligned vec4, from which the three kernel columns'
//! windows follow by swizzles.
//! - Forward and input gradient: a lane owns runs of output pixels (vec4 columns); its runs that
//!   lie in one row share their neighbours' loads. Per input channel a lane of the 32-row tile
//!   loads 36 weights and 18 to 36 vec4 for 4,608 multiply-adds, where the GEMM loads 180
//!   values. Weights are loaded a few rows per lane and broadcast, as in the GEMM.
//! - Weight gradient: runs are steps of K, the same for every lane; a lane owns one (input
//!   channel, kernel row) pair and slides its three segments along the row (one vec4 load a
//!   run), and the output channels' dy runs load as vec4 a few per lane and are broadcast: per
//!   run a lane of the 32-row tile loads 5 vec4 for 384 multiply-adds, where the GEMM loads 20
//!   values for 128.
//!
//! The forward pass and input gradient are out[n, o, y, x] = sum over i, a, b of W(o, i, a, b)
//! in[n, i, y - 1 + a, x - 1 + b] with out and in of the same plane size: the forward pass with
//! in = x, out = y, W = w; the input gradient with in = dy, out = dx, W(o, i, a, b) =
//! w[i, o, 2 - a, 2 - b].
//!
//! Bindings as the GEMM's passes: 0 params (the `Params` of conv2d.rs and `flipped`), 1 w [Co,
//! Ci, 3, 3] (dy for the weight gradient), 2 in (x for the weight gradient), 3 out (written;
//! dw's split-K slices for the weight gradient); tensors of activations as vec4 arrays.
//! Dispatch: `workgroups`, one subgroup per workgroup.

use std::fmt::Write;

use super::conv2d::{ConvGeometry, ConvPass};
use super::gemm_subgroup::{supports_subgroup_size, Tile};
use crate::gpu::KernelKey;

/// What every row kernel starts with: the geometry (the `Params` of conv2d.rs, up to the K chunk
/// of a split weight gradient, then `flipped`), the pass's input activations as vec4 (binding
/// 2), and their loads, zero where `ok` is false.
const PRELUDE: &str = "struct Params { m: u32, n: u32, k: u32, batch: u32, ci: u32, h: u32, w: u32, co: u32, ho: u32, wo: u32, kh: u32, kw: u32, stride: u32, pad: u32, chunk: u32, flipped: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;
fn run_or_zero(i: u32, ok: bool) -> vec4<f32> {
  var v = vec4<f32>();
  if (ok) { v = src[i]; }
  return v;
}
";

/// Whether the passes of `g` run here: a 3x3 kernel, stride 1, padding 1 (output planes the size
/// of input planes), width a multiple of 4.
pub fn applies(g: &ConvGeometry) -> bool {
    (g.kh, g.kw, g.stride, g.pad) == (3, 3, 1, 1) && g.w.is_multiple_of(4)
}

/// The pass's rows (output channels; for the weight gradient Co) and columns (vec4 runs of
/// output pixels, batch x plane / 4; for the weight gradient the (input channel, kernel row)
/// pairs).
fn sizes(pass: ConvPass, g: &ConvGeometry) -> (usize, usize) {
    match pass {
        ConvPass::Forward => (g.co, g.batch * g.h * g.w / 4),
        ConvPass::GradInput => (g.ci, g.batch * g.h * g.w / 4),
        ConvPass::GradWeight => (g.co, 3 * g.ci),
    }
}

/// The tile: output channels as rows, as in the GEMM's `Tile::covering` (its columns count
/// floats, here each column is a run of 4 pixels); the weight gradient's lanes own one (input
/// channel, kernel row) pair each.
fn tile(pass: ConvPass, g: &ConvGeometry, sg: usize) -> Tile {
    let (rows, columns) = sizes(pass, g);
    match pass {
        ConvPass::GradWeight => Tile {
            rows: Tile::covering(sg, rows, 1).rows,
            col4: 1,
        },
        _ => Tile::covering(sg, rows, 4 * columns),
    }
}

/// The grid; `splits` K chunks of a weight gradient (1 for the other passes).
pub fn workgroups(pass: ConvPass, g: &ConvGeometry, sg: usize, splits: usize) -> [u32; 3] {
    let (rows, columns) = sizes(pass, g);
    let t = tile(pass, g, sg);
    let count = |n: usize| u32::try_from(n).expect("convolution too large");
    [
        count(columns.div_ceil(sg * t.col4)),
        count(rows.div_ceil(t.rows)),
        count(splits),
    ]
}

/// The pipeline key: one kernel per subgroup size and tile for the weight gradient, and one for
/// the forward pass and the input gradient together, per subgroup size, tile and whether a
/// lane's runs share one row (the plane's width a multiple of the lane's pixels). The two passes
/// differ only in how the weights are indexed, which the uniform `flipped` selects: one
/// pipeline instead of two halves what llvmpipe compiles before the first step (about 10 s for
/// the 32 x 4 tile).
pub fn key(pass: ConvPass, g: &ConvGeometry, sg: usize) -> KernelKey {
    let t = tile(pass, g, sg);
    if pass == ConvPass::GradWeight {
        return KernelKey::generated(format!("conv_rows_GradWeight_{sg}_{}", t.rows), || {
            weight_grad_source(sg, t.rows)
        });
    }
    let one_row = g.w.is_multiple_of(4 * t.col4);
    KernelKey::generated(
        format!(
            "conv_rows_{sg}_{}x{}{}",
            t.rows,
            t.col4,
            if one_row { "_row" } else { "" }
        ),
        || source(sg, t, one_row),
    )
}

/// The value of `flipped` in the pass's parameters: 1 for the input gradient, whose weights are
/// the forward pass's transposed and turned by 180 degrees.
pub fn flipped(pass: ConvPass) -> usize {
    usize::from(pass == ConvPass::GradInput)
}

/// The WGSL of the forward pass and input gradient kernel; `one_row`: a lane's `tile.col4` runs
/// always lie in one row.
pub fn source(sg: usize, tile: Tile, one_row: bool) -> String {
    assert!(
        supports_subgroup_size(sg) && tile.rows.is_multiple_of(sg),
        "no row kernel for subgroups of {sg}, {tile:?}"
    );
    let Tile { rows, col4 } = tile;
    let q = rows / sg;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Generated by src/ops/conv_rows.rs: forward pass and input gradient, subgroup size {sg}, {rows} channels x {col4} runs of 4 pixels per lane{}.
{PRELUDE}@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;
fn weight_or_zero(i: u32, ok: bool) -> f32 {{
  var v = 0.0;
  if (ok) {{ v = wt[i]; }}
  return v;
}}
@compute @workgroup_size({sg}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {{
  // The forward pass: W(o, i, a, b) = w[o, i, a, b], at (o in_c + i) 9 + 3a + b; the input
  // gradient: W(o, i, a, b) = w[i, o, 2 - a, 2 - b], at (i out_c + o) 9 + 8 - 3a - b.
  let flipped = p.flipped != 0u;
  let out_c = select(p.co, p.ci, flipped);
  let in_c = select(p.ci, p.co, flipped);
  let w_out = select(in_c * 9u, 9u, flipped);
  let w_in = select(9u, out_c * 9u, flipped);
  let w_tap = select(1u, 0xffffffffu, flipped);
  let w_first = select(0u, 8u, flipped);
  let w4 = p.w / 4u;
  let plane4 = p.h * w4;
  let columns = p.batch * plane4;
  let row = wid.y * {rows}u;
  let own_row = row + lane * {q}u;
  let first = (wid.x * {sg}u + lane) * {col4}u;",
        if one_row { ", in one row" } else { "" }
    );
    // Per run j: its image, row y and vec4 column x4 in the row, and which neighbours exist.
    for j in 0..col4 {
        let _ = writeln!(
            w,
            "  let col{j} = first + {j}u; let ok{j} = col{j} < columns; let cc{j} = min(col{j}, columns - 1u);
  let n{j} = cc{j} / plane4; let pix{j} = cc{j} % plane4; let y{j} = pix{j} / w4; let x4_{j} = pix{j} % w4;
  let left{j} = x4_{j} > 0u; let right{j} = x4_{j} + 1u < w4;
  let in_base{j} = n{j} * in_c * plane4 + x4_{j};"
        );
    }
    for r in 0..q {
        let _ = writeln!(
            w,
            "  let o{r} = own_row + {r}u; let row_ok{r} = o{r} < out_c; let w_row{r} = o{r} * w_out + w_first;"
        );
    }
    for i in 0..rows {
        for j in 0..col4 {
            let _ = writeln!(w, "  var acc{i}_{j} = vec4<f32>();");
        }
    }
    w.push_str("  for (var i = 0u; i < in_c; i++) {\n");
    for r in 0..q {
        let _ = writeln!(w, "    let w_at{r} = w_row{r} + i * w_in;");
    }
    for a in 0..3 {
        // This lane's weights of kernel row a: W(o, i, a, 0..3) for its q rows.
        for r in 0..q {
            let taps: Vec<String> = (0..3)
                .map(|b| {
                    format!(
                        "weight_or_zero(w_at{r} + {}u * w_tap, row_ok{r})",
                        3 * a + b
                    )
                })
                .collect();
            let _ = writeln!(w, "    let own{a}_{r} = vec3<f32>({});", taps.join(", "));
        }
        // The input row y - 1 + a under each run, and its neighbours' runs.
        for j in 0..col4 {
            let _ = writeln!(
                w,
                "    let yy{a}_{j} = i32(y{j}) + {a} - 1; let rok{a}_{j} = ok{j} && yy{a}_{j} >= 0 && yy{a}_{j} < i32(p.h);
    let at{a}_{j} = in_base{j} + i * plane4 + u32(max(yy{a}_{j}, 0)) * w4;
    let cur{a}_{j} = run_or_zero(at{a}_{j}, rok{a}_{j});"
            );
        }
        for j in 0..col4 {
            let prev = if one_row && j > 0 {
                format!("cur{a}_{}", j - 1)
            } else {
                format!("run_or_zero(at{a}_{j} - 1u, rok{a}_{j} && left{j})")
            };
            let next = if one_row && j + 1 < col4 {
                format!("cur{a}_{}", j + 1)
            } else {
                format!("run_or_zero(at{a}_{j} + 1u, rok{a}_{j} && right{j})")
            };
            let _ = writeln!(
                w,
                "    let prev{a}_{j} = {prev}; let next{a}_{j} = {next};
    let win{a}_{j}_0 = vec4<f32>(prev{a}_{j}.w, cur{a}_{j}.xyz);
    let win{a}_{j}_2 = vec4<f32>(cur{a}_{j}.yzw, next{a}_{j}.x);"
            );
        }
    }
    // Each sum takes the channel's 9 products, added up first, at once: llvmpipe keeps the sums
    // in memory, so each load and store of one should serve as many multiply-adds as it can,
    // and the running sum meets one addition per input channel.
    for i in 0..rows {
        for a in 0..3 {
            let _ = writeln!(
                w,
                "    let w{a}_{i} = subgroupBroadcast(own{a}_{}, {}u);",
                i % q,
                i / q
            );
        }
        for j in 0..col4 {
            let terms = (1..3).fold(
                format!("fma(win0_{j}_2, vec4<f32>(w0_{i}.z), fma(cur0_{j}, vec4<f32>(w0_{i}.y), win0_{j}_0 * w0_{i}.x))"),
                |sum, a| {
                    format!("fma(win{a}_{j}_2, vec4<f32>(w{a}_{i}.z), fma(cur{a}_{j}, vec4<f32>(w{a}_{i}.y), fma(win{a}_{j}_0, vec4<f32>(w{a}_{i}.x), {sum})))")
                },
            );
            let _ = writeln!(w, "    acc{i}_{j} += {terms};");
        }
    }
    w.push_str("  }\n");
    for i in 0..rows {
        let _ = writeln!(w, "  if (row + {i}u < out_c) {{");
        for j in 0..col4 {
            let _ = writeln!(
                w,
                "    if (ok{j}) {{ dst[(n{j} * out_c + row + {i}u) * plane4 + pix{j}] = acc{i}_{j}; }}"
            );
        }
        w.push_str("  }\n");
    }
    w.push_str("}\n");
    s
}

/// The WGSL of the weight gradient: dw[o, i, a, b] = sum over n, y, x of dy[n, o, y, x]
/// in[n, i, y - 1 + a, x - 1 + b], `rows` output channels per subgroup. K (the pixels) is walked
/// in runs of 4 along the rows of the plane, the same runs for every lane: each lane keeps the
/// input row segments under the run and its two neighbours for its own (i, a) pair, sliding
/// them along the row (one vec4 load per run), loads `rows / sg` output channels' dy runs as
/// vec4 and broadcasts them. Each sum takes a run's four products, added up first, at once:
/// llvmpipe keeps the sums in memory, and one load and store per four multiply-adds is what
/// makes this kernel faster than the GEMM; the running sum of a K chunk meets one addition per
/// run, as the GEMM's does. Workgroup z sums the K chunk [z chunk, (z + 1) chunk) into the z-th slice of c.
pub fn weight_grad_source(sg: usize, rows: usize) -> String {
    assert!(
        supports_subgroup_size(sg) && rows.is_multiple_of(sg),
        "no row weight gradient for subgroups of {sg}, {rows} rows"
    );
    let q = rows / sg;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Generated by src/ops/conv_rows.rs: GradWeight, subgroup size {sg}, {rows} output channels, one (input channel, kernel row) pair per lane.
{PRELUDE}@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
fn dy_or_zero(i: u32, ok: bool) -> vec4<f32> {{
  var v = vec4<f32>();
  if (ok) {{ v = dy[i]; }}
  return v;
}}
@compute @workgroup_size({sg}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {{
  let w4 = p.w / 4u;
  let plane4 = p.h * w4;
  let row = wid.y * {rows}u;
  let own_row = row + lane * {q}u;
  // This lane's pair: input channel i, kernel row a.
  let pair = wid.x * {sg}u + lane;
  let pair_ok = pair < 3u * p.ci;
  let i = min(pair / 3u, p.ci - 1u);
  let a = pair % 3u;
  let chunk = select(p.chunk, p.k, p.chunk == 0u);
  let k_begin = wid.z * chunk;
  let k_end = min(p.k, k_begin + chunk);
  // The runs of 4 pixels that meet [k_begin, k_end), and the first run's image, row, column.
  let run_end = (k_end + 3u) / 4u;
  var run = k_begin / 4u;
  var n = run / plane4;
  var y = (run % plane4) / w4;
  var x4 = run % w4;
  var prev = vec4<f32>();
  var cur = vec4<f32>();
  var next = vec4<f32>();
  var fresh = true;"
    );
    for r in 0..q {
        let _ = writeln!(
            w,
            "  let o{r} = own_row + {r}u; let row_ok{r} = o{r} < p.co;"
        );
    }
    for ii in 0..rows {
        for b in 0..3 {
            let _ = writeln!(w, "  var acc{ii}_{b} = 0.0;");
        }
    }
    let _ = writeln!(
        w,
        "  for (; run < run_end; run++) {{
    // This lane's input row under the run, and its neighbours' runs, slid along the row.
    let yy = i32(y) + i32(a) - 1;
    let in_ok = pair_ok && yy >= 0 && yy < i32(p.h);
    let at = ((n * p.ci + i) * p.h + u32(max(yy, 0))) * w4 + x4;
    if (fresh) {{
      prev = run_or_zero(at - 1u, in_ok && x4 > 0u);
      cur = run_or_zero(at, in_ok);
    }} else {{
      prev = cur;
      cur = next;
    }}
    next = run_or_zero(at + 1u, in_ok && x4 + 1u < w4);
    let win0 = vec4<f32>(prev.w, cur.xyz);
    let win2 = vec4<f32>(cur.yzw, next.x);
    // The pixels of the run inside the chunk.
    let pixel = vec4<u32>(run * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    let inside = select(vec4<f32>(), vec4<f32>(1.0), (pixel >= vec4<u32>(k_begin)) & (pixel < vec4<u32>(k_end)));
    let dy_at = (n * p.co) * plane4 + y * w4 + x4;"
    );
    for r in 0..q {
        let _ = writeln!(
            w,
            "    let own{r} = dy_or_zero(dy_at + o{r} * plane4, row_ok{r}) * inside;"
        );
    }
    for ii in 0..rows {
        let _ = writeln!(
            w,
            "    let d{ii} = subgroupBroadcast(own{}, {}u);",
            ii % q,
            ii / q
        );
        for (b, win) in ["win0", "cur", "win2"].iter().enumerate() {
            let _ = writeln!(w, "    acc{ii}_{b} += dot(d{ii}, {win});");
        }
    }
    let _ = writeln!(
        w,
        "    x4 += 1u;
    fresh = x4 == w4;
    if (fresh) {{
      x4 = 0u;
      y += 1u;
      if (y == p.h) {{ y = 0u; n += 1u; }}
    }}
  }}
  if (pair_ok) {{
    let out = wid.z * p.m * p.n + i * 9u + a * 3u;"
    );
    for ii in 0..rows {
        let _ = writeln!(w, "    if (row + {ii}u < p.co) {{");
        for b in 0..3 {
            let _ = writeln!(
                w,
                "      dst[out + (row + {ii}u) * p.n + {b}u] = acc{ii}_{b};"
            );
        }
        w.push_str("    }\n");
    }
    w.push_str("  }\n}\n");
    s
}
