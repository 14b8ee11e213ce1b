//! Batch normalisation as small ops over x viewed as [N, C, S] (S = H*W, or 1 for [N, C]):
//! the batch mean and variance (one pass), the normalise-and-scale transform, and their gradients.
//! Composed by `nn::Layers::batch_norm`: training uses the batch's statistics, inference the
//! running ones. Where S is a multiple of 4 the training kernels run four elements of one channel
//! per invocation (batchnorm_vec4.wgsl); elsewhere the scalar kernels of batchnorm.wgsl.

mod apply;
mod grad;
mod stats;

pub use apply::{BnAct, BnApply};
pub use grad::{
    BnBatchStatsGrad, BnGradSums, BnScaleGrad, BnStat, BnStatGrad, ChannelDotNormalized,
};
pub use stats::{batch_statistics, ChannelBroadcast, ChannelMoments, ChannelSum};

use super::{numel, per_element, Params};
use crate::gpu::{Dispatch, Gpu};
use crate::Result;

/// (N, C, S) of a [N, C, ...] tensor.
fn view(shape: &[usize]) -> std::result::Result<(usize, usize, usize), String> {
    if shape.len() < 2 {
        return Err(format!("batch norm needs [N, C, ...], got {shape:?}"));
    }
    Ok((shape[0], shape[1], numel(&shape[2..])))
}

fn check_channels(
    op: &str,
    x: &[usize],
    per_channel: &[&[usize]],
) -> std::result::Result<usize, String> {
    let (_, c, _) = view(x)?;
    for s in per_channel {
        if *s != [c] {
            return Err(format!("{op}: per-channel inputs must be [{c}], got {s:?}"));
        }
    }
    Ok(c)
}

/// A batch-norm kernel's launch: the [N, C, S] view, (eps, scale) and the entry's flags.
#[derive(Clone, Copy)]
struct BnLaunch {
    view: (usize, usize, usize),
    eps: f32,
    scale: f32,
    flags: u32,
}

impl BnLaunch {
    fn new(view: (usize, usize, usize), eps: f32, scale: f32) -> Self {
        Self {
            view,
            eps,
            scale,
            flags: 0,
        }
    }

    fn flags(self, flags: u32) -> Self {
        Self { flags, ..self }
    }

    /// Whether the view is [N, C] features (S = 1), reduced by the *_columns entries.
    fn columns(&self) -> bool {
        self.view.2 == 1
    }

    /// The workgroups of a per-channel reduction: a workgroup per channel, or a lane per
    /// channel for `columns`.
    fn reduction_groups(&self) -> usize {
        if self.columns() {
            per_element(self.view.1)
        } else {
            self.view.1
        }
    }

    /// Whether four consecutive elements always share a channel (batchnorm_vec4.wgsl applies).
    fn vec4(&self) -> bool {
        self.view.2.is_multiple_of(4)
    }

    /// The shader the view's kernels come from, and the elements each of its loads takes.
    fn shader(&self) -> (&'static str, usize) {
        if self.vec4() {
            ("batchnorm_vec4", 4)
        } else {
            ("batchnorm", 1)
        }
    }

    /// The kernels' `Params`; `run`: elements (in batchnorm_vec4.wgsl vec4) per invocation of
    /// the pointwise entries.
    fn params(&self, spatial: usize, run: usize) -> Vec<u32> {
        let (n, c, _) = self.view;
        Params::default()
            .u(n)
            .u(c)
            .u(spatial)
            .u(self.flags as usize)
            .f(self.eps)
            .f(self.scale)
            .u(run)
            .padded(8)
    }

    /// Elements per invocation of the pointwise entries of batchnorm.wgsl, which read several
    /// per-channel values once per channel a run enters (`run` there): 16 on software adapters,
    /// where every load is a loop over the lanes (the quick step's 7 x 7 layers: bn_apply and
    /// bn_batch_stats_grad about 20% faster than with 4 in five of six alternated profiles); 4
    /// on hardware GPUs, as before that measurement.
    fn scalar_run(gpu: &Gpu) -> usize {
        if gpu.is_cpu() {
            16
        } else {
            4
        }
    }

    /// Vec4s per invocation of the pointwise vec4 entries, which read several per-channel
    /// values (`run` in batchnorm_vec4.wgsl). On software adapters, where every load is a loop
    /// over the lanes, the largest divisor of S / 4 up to 8, so that a run never leaves its
    /// channel and reads them once: 7 for the 14 x 14 and 28 x 28 planes (their kernels ran
    /// 23-28% faster in the quick step's profile than with runs of at most 4). On hardware GPUs
    /// 1, so that neighbouring invocations read neighbouring vec4; the per-channel values come
    /// from cache there.
    fn vec4_run(&self, gpu: &Gpu) -> usize {
        if !gpu.is_cpu() {
            return 1;
        }
        let spatial4 = self.view.2 / 4;
        (1..=8)
            .rev()
            .find(|r| spatial4.is_multiple_of(*r))
            .expect("1 divides every size")
    }
}

/// The `entry` of batchnorm.wgsl over `groups` workgroups, one element (or channel) per
/// invocation.
fn launch(
    gpu: &Gpu,
    entry: &'static str,
    l: BnLaunch,
    bindings: &[(u32, &wgpu::Buffer)],
    groups: usize,
) -> Result<Vec<Dispatch>> {
    let params = l.params(l.view.2, 1);
    super::launch(gpu, ("batchnorm", entry), &params, bindings, groups)
}

/// The per-channel reduction `entry` of batchnorm_vec4.wgsl where the view is `vec4`, else
/// of batchnorm.wgsl: a workgroup per channel, or a lane per channel for `columns`.
fn launch_reduction(
    gpu: &Gpu,
    entry: &'static str,
    l: BnLaunch,
    bindings: &[(u32, &wgpu::Buffer)],
) -> Result<Vec<Dispatch>> {
    let (shader, width) = l.shader();
    let params = l.params(l.view.2 / width, 1);
    super::launch(
        gpu,
        (shader, entry),
        &params,
        bindings,
        l.reduction_groups(),
    )
}

/// The pointwise `entry` of batchnorm_vec4.wgsl where the view is `vec4` (`vec4_run` vec4 per
/// invocation), else of batchnorm.wgsl (`scalar_run` elements per invocation).
fn launch_pointwise(
    gpu: &Gpu,
    entry: &'static str,
    l: BnLaunch,
    bindings: &[(u32, &wgpu::Buffer)],
) -> Result<Vec<Dispatch>> {
    let (n, c, s) = l.view;
    let (shader, width) = l.shader();
    let run = if l.vec4() {
        l.vec4_run(gpu)
    } else {
        BnLaunch::scalar_run(gpu)
    };
    let params = l.params(s / width, run);
    let groups = per_element((n * c * s / width).div_ceil(run));
    super::launch(gpu, (shader, entry), &params, bindings, groups)
}

/// Host loop over (element index, channel) of a [N, C, S] view.
fn each(shape: &[usize], mut f: impl FnMut(usize, usize)) {
    let (n, c, s) = view(shape).expect("checked shapes");
    for i in 0..n * c * s {
        f(i, (i / s) % c);
    }
}
