//! 2-D convolution (NCHW, no bias, square stride and padding), its gradients to the input and
//! to the weight: three implicit GEMMs, no im2col buffer (`gemm_tiled.wgsl`,
//! `gemm_tiled_large.wgsl` and the generated subgroup GEMM adding in K order on hardware GPUs,
//! whichever times fastest there; the generated subgroup GEMM on software adapters), the input
//! gradient one GEMM per parity class of its pixels (`ParityClass`); and on
//! software adapters, direct kernels for stride-1 passes with few output channels
//! (conv_direct.rs) and row kernels for the other 3x3 stride-1 passes over widths that are
//! multiples of 4 (conv_rows.rs).

use super::gemm_subgroup::{self, Accumulation, GemmKind, Tile};
use super::matmul;
use super::{conv_direct, conv_rows};
use super::{HostTensor, MatmulKernel, Op, Params, TensorRef, Work};
use crate::gpu::{Dispatch, Gpu, KernelKey};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }

    /// The geometry of x [N, Ci, H, W] convolved with w [Co, Ci, Kh, Kw].
    fn of(
        x: &[usize],
        w: &[usize],
        stride: usize,
        pad: usize,
    ) -> std::result::Result<Self, String> {
        let (&[batch, ci, h, wd], &[co, wci, kh, kw]) = (x, w) else {
            return Err(format!(
                "conv2d needs [N, C, H, W] and [Co, Ci, Kh, Kw], got {x:?} and {w:?}"
            ));
        };
        if wci != ci {
            return Err(format!(
                "conv2d: the input has {ci} channels, the weight expects {wci}"
            ));
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw || stride == 0 {
            return Err(format!(
                "conv2d: a {kh}x{kw} kernel with padding {pad} does not fit a {h}x{wd} image"
            ));
        }
        Ok(Self {
            batch,
            ci,
            h,
            w: wd,
            co,
            kh,
            kw,
            stride,
            pad,
        })
    }

    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.batch, self.co, self.ho(), self.wo()]
    }

    /// Multiply-adds of the forward pass (each gradient costs the same).
    pub fn macs(&self) -> usize {
        self.batch * self.co * self.ho() * self.wo() * self.ci * self.kh * self.kw
    }

    /// (M, N, K) of the implicit GEMM for `pass`.
    fn gemm(&self, pass: ConvPass) -> (usize, usize, usize) {
        let taps = self.kh * self.kw;
        match pass {
            ConvPass::Forward => (self.co, self.batch * self.ho() * self.wo(), self.ci * taps),
            ConvPass::GradInput => (self.ci, self.batch * self.h * self.w, self.co * taps),
            ConvPass::GradWeight => (self.co, self.ci * taps, self.batch * self.ho() * self.wo()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPass {
    Forward,
    GradInput,
    GradWeight,
}

impl ConvPass {
    fn mode(self) -> u32 {
        match self {
            ConvPass::Forward => 1,
            ConvPass::GradInput => 2,
            ConvPass::GradWeight => 3,
        }
    }
}

/// One parity class of a strided convolution's input gradient: the pixels (y, x) with
/// (y + pad) % stride == (ry, rx). Only taps with ky = ry (mod stride) and kx = rx reach them,
/// so each class is a dense GEMM over Co * th * tw; pixel y = stride * jy + ry - pad with
/// jy in jy0..jy0 + hc reads output row jy - t through tap ky = ry + stride * t.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParityClass {
    ry: usize,
    rx: usize,
    jy0: usize,
    jx0: usize,
    hc: usize,
    wc: usize,
    th: usize,
    tw: usize,
}

impl ParityClass {
    /// The class's GEMM: M = Ci, N = its pixels, K = Co times its taps.
    fn gemm(&self, g: &ConvGeometry) -> (usize, usize, usize) {
        (g.ci, g.batch * self.hc * self.wc, g.co * self.th * self.tw)
    }

    /// The shaders' `Params` of the class's launch (see gemm_operands.wgsl, MODE 2).
    fn params(&self, g: &ConvGeometry) -> Params {
        geometry_params(g, self.gemm(g), 0)
            .u(0)
            .u(self.ry)
            .u(self.rx)
            .u(self.jy0)
            .u(self.jx0)
            .u(self.hc)
            .u(self.wc)
            .u(self.th)
            .u(self.tw)
    }
}

fn parity_classes(g: &ConvGeometry) -> Vec<ParityClass> {
    let s = g.stride;
    // The j with 0 <= s j + r - pad < size, and the taps r + s t < k.
    let span = |r: usize, size: usize, k: usize| {
        let j0 = g.pad.saturating_sub(r).div_ceil(s);
        let end = (size + g.pad).saturating_sub(r).div_ceil(s);
        (j0, end.saturating_sub(j0), k.saturating_sub(r).div_ceil(s))
    };
    let mut classes = Vec::new();
    for ry in 0..s {
        for rx in 0..s {
            let (jy0, hc, th) = span(ry, g.h, g.kh);
            let (jx0, wc, tw) = span(rx, g.w, g.kw);
            if hc > 0 && wc > 0 {
                classes.push(ParityClass {
                    ry,
                    rx,
                    jy0,
                    jx0,
                    hc,
                    wc,
                    th,
                    tw,
                });
            }
        }
    }
    classes
}

/// The shaders' `Params` up to the K chunk (see gemm_operands.wgsl).
fn geometry_params(g: &ConvGeometry, (m, n, k): (usize, usize, usize), chunk: usize) -> Params {
    Params::default()
        .u(m)
        .u(n)
        .u(k)
        .u(g.batch)
        .u(g.ci)
        .u(g.h)
        .u(g.w)
        .u(g.co)
        .u(g.ho())
        .u(g.wo())
        .u(g.kh)
        .u(g.kw)
        .u(g.stride)
        .u(g.pad)
        .u(chunk)
}

/// The kernels that run convolutions on an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernels {
    /// The implicit GEMM of gemm_tiled.wgsl, 64x64 tiles: hardware GPUs' passes too small to
    /// fill `TiledLarge`'s tiles.
    Tiled,
    /// The implicit GEMM of gemm_tiled_large.wgsl, 128x128 double-buffered tiles: hardware
    /// GPUs' large passes (`matmul::fills_large_tiles`).
    TiledLarge,
    /// The generated subgroup GEMM, the direct kernels of conv_direct.rs for stride-1 passes
    /// with few output channels and the row kernels of conv_rows.rs for the other 3x3 stride-1 passes (weight gradients with
    /// more taps than output channels included) over widths that are multiples of 4: software
    /// adapters with subgroups of a fixed size.
    Subgroup,
    /// The generated subgroup GEMM alone, on this tile, adding its products in K order as the
    /// tiled GEMMs do (`Accumulation::InOrder`): a candidate hardware GPUs with subgroups of a
    /// fixed size time against the tiled kernels.
    SubgroupInOrder(Tile),
}

impl ConvKernels {
    /// The kernels for one pass: `splits` K chunks (weight gradients) multiply the workgroups.
    pub fn choose(gpu: &Gpu, pass: ConvPass, g: &ConvGeometry, splits: usize) -> Self {
        if gpu.is_cpu() && ConvKernels::Subgroup.available(gpu) {
            return ConvKernels::Subgroup;
        }
        let (m, mut n, _) = g.gemm(pass);
        if pass == ConvPass::GradInput {
            // Each parity class is a launch of its own.
            n = parity_classes(g)
                .iter()
                .map(|c| c.gemm(g).1)
                .max()
                .unwrap_or(n);
        }
        if !gpu.is_cpu() && matmul::fills_large_tiles(m, n, splits) {
            ConvKernels::TiledLarge
        } else {
            ConvKernels::Tiled
        }
    }

    /// The kernels that may run a pass on this adapter, `choose`'s first: on hardware GPUs
    /// both tiled families and, with subgroups of a fixed size, `SubgroupInOrder`, which
    /// compute bit-identical results, for `Gpu::fastest` to time.
    pub fn candidates(gpu: &Gpu, pass: ConvPass, g: &ConvGeometry, splits: usize) -> Vec<Self> {
        let mut candidates = match Self::choose(gpu, pass, g, splits) {
            ConvKernels::Tiled => vec![ConvKernels::Tiled, ConvKernels::TiledLarge],
            ConvKernels::TiledLarge => vec![ConvKernels::TiledLarge, ConvKernels::Tiled],
            chosen => return vec![chosen],
        };
        let subgroup = ConvKernels::SubgroupInOrder(Tile::in_order());
        if subgroup.available(gpu) {
            candidates.push(subgroup);
        }
        candidates
    }

    pub fn available(self, gpu: &Gpu) -> bool {
        match self {
            ConvKernels::Tiled | ConvKernels::TiledLarge => true,
            ConvKernels::Subgroup => MatmulKernel::Subgroup.available(gpu),
            ConvKernels::SubgroupInOrder(_) => gpu
                .fixed_subgroup_size()
                .is_some_and(gemm_subgroup::in_order_supports_subgroup_size),
        }
    }
}

/// The launches of one pass on the adapter's kernels (`ConvKernels::candidates`, the fastest
/// where the device times them, else `ConvKernels::choose`'s): `a` and `b` as
/// the pass reads them (see gemm_operands.wgsl), `c` written. `splits` > 1 (weight gradients only)
/// splits K into that many chunks, each written to its own M x N slice of `c`.
pub fn dispatch(
    gpu: &Gpu,
    pass: ConvPass,
    g: &ConvGeometry,
    splits: usize,
    buffers: (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
) -> Result<Vec<Dispatch>> {
    let candidates = ConvKernels::candidates(gpu, pass, g, splits);
    let kernels = fastest(gpu, &candidates, pass, g, splits, buffers)?;
    dispatch_on(kernels, gpu, pass, g, splits, buffers)
}

/// The fastest of `candidates` for the pass on this device (`Gpu::fastest`), timed on scratch
/// buffers the sizes of `buffers`.
pub fn fastest(
    gpu: &Gpu,
    candidates: &[ConvKernels],
    pass: ConvPass,
    g: &ConvGeometry,
    splits: usize,
    (a, b, c): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
) -> Result<ConvKernels> {
    let problem = format!("conv2d {pass:?} {g:?} in {splits} splits");
    gpu.fastest(
        &problem,
        candidates,
        &[a.size(), b.size(), c.size()],
        |kernels, s| dispatch_on(kernels, gpu, pass, g, splits, (&s[0], &s[1], &s[2])),
    )
}

/// `dispatch` on the given kernels, which must be available on the adapter.
pub fn dispatch_on(
    kernels: ConvKernels,
    gpu: &Gpu,
    pass: ConvPass,
    g: &ConvGeometry,
    splits: usize,
    (a, b, c): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
) -> Result<Vec<Dispatch>> {
    assert!(
        splits == 1 || pass == ConvPass::GradWeight,
        "only weight gradients split K"
    );
    assert!(
        kernels.available(gpu),
        "{kernels:?} convolutions need subgroups of a fixed size"
    );
    let bindings = [(1, a), (2, b), (3, c)];
    let splits_u32 = u32::try_from(splits).expect("too many splits");
    let groups = |m: usize, n: usize, rows: usize, cols: usize| {
        [
            u32::try_from(n.div_ceil(cols)).expect("convolution too large"),
            u32::try_from(m.div_ceil(rows)).expect("convolution too large"),
            splits_u32,
        ]
    };
    let (m, n, k) = g.gemm(pass);
    let chunk = k.div_ceil(splits);
    let tiled = match kernels {
        ConvKernels::Tiled => Some(("gemm_tiled", 64)),
        ConvKernels::TiledLarge => Some(("gemm_tiled_large", 128)),
        ConvKernels::Subgroup | ConvKernels::SubgroupInOrder(_) => None,
    };
    if let Some((shader, tile)) = tiled {
        let key = KernelKey::new(shader, "main").with("MODE", f64::from(pass.mode()));
        let launch = |(m, n, _): (usize, usize, usize), params: Params| {
            gpu.dispatch(
                &key,
                &params.padded(matmul::TILED_PARAMS_WORDS),
                &bindings,
                groups(m, n, tile, tile),
            )
        };
        if pass == ConvPass::GradInput {
            return parity_classes(g)
                .iter()
                .map(|class| launch(class.gemm(g), class.params(g)))
                .collect();
        }
        return Ok(vec![launch(
            (m, n, k),
            geometry_params(g, (m, n, k), chunk),
        )?]);
    }
    let sg = gpu.fixed_subgroup_size().expect("checked above");
    let in_order = match kernels {
        ConvKernels::SubgroupInOrder(tile) => Some(tile),
        _ => None,
    };
    let launch = |kind: GemmKind, (m, n): (usize, usize), params: Params| {
        let (tile, sum) = match in_order {
            Some(tile) => (tile, Accumulation::InOrder),
            None => (Tile::covering(sg, m, n), Accumulation::Fours),
        };
        gpu.dispatch(
            &gemm_subgroup::key(sg, kind, tile, sum),
            &params.padded(24),
            &bindings,
            groups(m, n, tile.rows, tile.columns_per_workgroup(sg)),
        )
    };
    if pass == ConvPass::GradWeight && n < m {
        // Fewer taps than output channels: taps as rows, channels as the lanes' columns.
        let params = geometry_params(g, (n, m, k), chunk);
        return Ok(vec![launch(
            GemmKind::ConvWeightGradByTaps,
            (n, m),
            params,
        )?]);
    }
    if in_order.is_none() && conv_direct::applies(pass, g, sg) {
        return Ok(vec![gpu.dispatch(
            &conv_direct::key(pass, g, sg),
            &geometry_params(g, (m, n, k), 0).padded(24),
            &bindings,
            conv_direct::workgroups(pass, g, sg),
        )?]);
    }
    if in_order.is_none() && conv_rows::applies(g) {
        return Ok(vec![gpu.dispatch(
            &conv_rows::key(pass, g, sg),
            &geometry_params(g, (m, n, k), chunk)
                .u(conv_rows::flipped(pass))
                .padded(24),
            &bindings,
            conv_rows::workgroups(pass, g, sg, splits),
        )?]);
    }
    if pass != ConvPass::GradInput {
        let params = geometry_params(g, (m, n, k), chunk);
        return Ok(vec![launch(GemmKind::Conv(pass), (m, n), params)?]);
    }
    parity_classes(g)
        .iter()
        .map(|class| {
            let (m, n, _) = class.gemm(g);
            launch(GemmKind::Conv(pass), (m, n), class.params(g))
        })
        .collect()
}

/// The input pixel read by output (n, oy, ox) through tap (ky, kx), if inside the image.
fn source_pixel(
    g: &ConvGeometry,
    oy: usize,
    ox: usize,
    ky: usize,
    kx: usize,
) -> Option<(usize, usize)> {
    let y = (oy * g.stride + ky).checked_sub(g.pad)?;
    let x = (ox * g.stride + kx).checked_sub(g.pad)?;
    (y < g.h && x < g.w).then_some((y, x))
}

/// Calls `f(x index, w index, y index)` for every multiply-add of the convolution.
fn for_each_mac(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (ho, wo) = (g.ho(), g.wo());
    for n in 0..g.batch {
        for co in 0..g.co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((n * g.co + co) * ho + oy) * wo + ox;
                    for ci in 0..g.ci {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                if let Some((y, x)) = source_pixel(g, oy, ox, ky, kx) {
                                    let xi = ((n * g.ci + ci) * g.h + y) * g.w + x;
                                    let wi = ((co * g.ci + ci) * g.kh + ky) * g.kw + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y = conv2d(x, w); inputs (x [N, Ci, H, W], w [Co, Ci, Kh, Kw]).
#[derive(Debug, Clone, Copy)]
pub struct Conv2d {
    pub stride: usize,
    pub pad: usize,
}

impl Op for Conv2d {
    fn name(&self) -> String {
        format!("conv2d(stride={}, pad={})", self.stride, self.pad)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(ConvGeometry::of(x[0], x[1], self.stride, self.pad)?.output_shape())
    }

    fn work(&self, inputs: &[&[usize]], output: &[usize]) -> Work {
        let g =
            ConvGeometry::of(inputs[0], inputs[1], self.stride, self.pad).expect("checked shapes");
        Work::moving(inputs, output, 2.0 * g.macs() as f64)
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let geometry = ConvGeometry::of(g.shape(x[0]), g.shape(x[1]), self.stride, self.pad)
            .expect("checked shapes");
        let weight_grad = |g: &mut Graph| {
            let splits = weight_grad_splits(&geometry);
            let partial = g.apply(Conv2dGradWeight { geometry, splits }, &[x[0], dy]);
            if splits > 1 {
                g.sum(partial, 0)
            } else {
                partial
            }
        };
        vec![
            needs[0].then(|| g.apply(Conv2dGradInput { geometry }, &[dy, x[1]])),
            needs[1].then(|| weight_grad(g)),
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let g = ConvGeometry::of(&x[0].shape, &x[1].shape, self.stride, self.pad)
            .expect("checked shapes");
        let shape = g.output_shape();
        let mut out = vec![0.0; shape.iter().product()];
        for_each_mac(&g, |xi, wi, yi| out[yi] += x[0].data[xi] * x[1].data[wi]);
        HostTensor::new(&shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let g = ConvGeometry::of(x[0].shape, x[1].shape, self.stride, self.pad)
            .expect("checked shapes");
        dispatch(
            gpu,
            ConvPass::Forward,
            &g,
            1,
            (x[1].buffer, x[0].buffer, y.buffer),
        )
    }
}

/// dx of a convolution; inputs (dy, w).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dGradInput {
    pub geometry: ConvGeometry,
}

impl Op for Conv2dGradInput {
    fn name(&self) -> String {
        "conv2d_grad_input".into()
    }

    fn work(&self, inputs: &[&[usize]], output: &[usize]) -> Work {
        Work::moving(inputs, output, 2.0 * self.geometry.macs() as f64)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let g = &self.geometry;
        if x[0] != g.output_shape() || x[1] != [g.co, g.ci, g.kh, g.kw] {
            return Err(format!(
                "conv2d_grad_input: shapes {x:?} do not match {g:?}"
            ));
        }
        Ok(vec![g.batch, g.ci, g.h, g.w])
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dz: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        // dx is linear in both dy and w: its adjoints are a convolution and a weight gradient.
        let conv = Conv2d {
            stride: self.geometry.stride,
            pad: self.geometry.pad,
        };
        vec![
            needs[0].then(|| g.apply(conv, &[dz, x[1]])),
            needs[1].then(|| {
                g.apply(
                    Conv2dGradWeight {
                        geometry: self.geometry,
                        splits: 1,
                    },
                    &[dz, x[0]],
                )
            }),
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let g = &self.geometry;
        let mut out = vec![0.0; g.batch * g.ci * g.h * g.w];
        for_each_mac(g, |xi, wi, yi| out[xi] += x[1].data[wi] * x[0].data[yi]);
        HostTensor::new(&[g.batch, g.ci, g.h, g.w], out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        dispatch(
            gpu,
            ConvPass::GradInput,
            &self.geometry,
            1,
            (x[1].buffer, x[0].buffer, y.buffer),
        )
    }
}

/// dw of a convolution; inputs (x, dy).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dGradWeight {
    pub geometry: ConvGeometry,
    /// Chunks of K (batch x output pixels) computed apart: the output is then
    /// [splits, Co, Ci, Kh, Kw], partial sums to be added (see `weight_grad_splits`).
    pub splits: usize,
}

/// The longest K chunk of a weight gradient: each output's serial sum runs over one chunk, and
/// the chunks' partial sums are added by the cascaded sum over axis 0, so the rounding error
/// stays that of MAX_WEIGHT_GRAD_CHUNK terms however large the batch and the image.
pub const MAX_WEIGHT_GRAD_CHUNK: usize = 2048;

/// K chunks for a weight gradient: a few output tiles over a long K would otherwise run as a
/// few workgroups, so aim for 32 with chunks of at least 1024; and no chunk is longer than
/// MAX_WEIGHT_GRAD_CHUNK.
pub fn weight_grad_splits(g: &ConvGeometry) -> usize {
    let (m, n, k) = g.gemm(ConvPass::GradWeight);
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    let for_occupancy = (k / 1024).min(32usize.div_ceil(tiles));
    for_occupancy.max(k.div_ceil(MAX_WEIGHT_GRAD_CHUNK)).max(1)
}

impl Op for Conv2dGradWeight {
    fn name(&self) -> String {
        "conv2d_grad_weight".into()
    }

    fn work(&self, inputs: &[&[usize]], output: &[usize]) -> Work {
        Work::moving(inputs, output, 2.0 * self.geometry.macs() as f64)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let g = &self.geometry;
        if x[0] != [g.batch, g.ci, g.h, g.w] || x[1] != g.output_shape() {
            return Err(format!(
                "conv2d_grad_weight: shapes {x:?} do not match {g:?}"
            ));
        }
        let weight = vec![g.co, g.ci, g.kh, g.kw];
        Ok(if self.splits > 1 {
            [vec![self.splits], weight].concat()
        } else {
            weight
        })
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dz: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let conv = Conv2d {
            stride: self.geometry.stride,
            pad: self.geometry.pad,
        };
        vec![
            needs[0].then(|| {
                g.apply(
                    Conv2dGradInput {
                        geometry: self.geometry,
                    },
                    &[x[1], dz],
                )
            }),
            needs[1].then(|| g.apply(conv, &[x[0], dz])),
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let g = &self.geometry;
        let weights = g.co * g.ci * g.kh * g.kw;
        let chunk = g.gemm(ConvPass::GradWeight).2.div_ceil(self.splits);
        let mut out = vec![0.0; self.splits * weights];
        for_each_mac(g, |xi, wi, yi| {
            // K runs over (n, oy, ox): yi without its channel.
            let hwo = g.ho() * g.wo();
            let k = (yi / (g.co * hwo)) * hwo + yi % hwo;
            out[(k / chunk) * weights + wi] += x[0].data[xi] * x[1].data[yi];
        });
        let shape = self
            .output_shape(&[&x[0].shape, &x[1].shape])
            .expect("checked shapes");
        HostTensor::new(&shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        dispatch(
            gpu,
            ConvPass::GradWeight,
            &self.geometry,
            self.splits,
            (x[1].buffer, x[0].buffer, y.buffer),
        )
    }
}
