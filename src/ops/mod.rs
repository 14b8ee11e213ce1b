//! Ops: each file holds one op's shape rule, its backward (as more graph nodes), its CPU f64
//! reference and the dispatch of its WGSL kernels.

mod add;
mod batch_norm;
mod bias_add;
mod byol_loss;
pub mod conv2d;
pub mod conv_direct;
pub mod conv_rows;
mod ema;
pub mod gemm_subgroup;
mod l2norm;
pub mod matmul;
mod mul;
mod optim;
mod pool;
mod reduce;
mod relu;
mod scale;
mod sgd;
mod softmax_xent;
mod stats;
mod take_row;
mod view;

pub use add::Add;
pub use batch_norm::{
    batch_statistics, BnAct, BnApply, BnBatchStatsGrad, BnGradSums, BnScaleGrad, BnStat,
    BnStatGrad, ChannelBroadcast, ChannelDotNormalized, ChannelMoments, ChannelSum,
};
pub use bias_add::BiasAdd;
pub use byol_loss::{ByolLoss, ByolLossGrad};
pub use conv2d::{Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvGeometry};
pub use ema::{Accumulate, EmaUpdate};
pub use l2norm::{L2Normalize, L2NormalizeGrad};
pub use matmul::{MatMul, MatmulKernel};
pub use mul::Mul;
pub use optim::{LarsMomentum, LarsParams, ScheduledRule, ScheduledUpdate, SquaredNorms};
pub use pool::{MaxPool2d, MaxPool2dGrad};
pub use reduce::{BroadcastAxis, SumAxis};
pub use relu::{Relu, ReluGrad};
pub use scale::Scale;
pub use sgd::SgdUpdate;
pub use softmax_xent::{SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad};
pub use stats::ColumnStdMean;
pub use take_row::TakeRow;
pub use view::{Reshape, StopGradient};

use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// How the executor treats an op's output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Writes a fresh output.
    Compute,
    /// The output is input 0's buffer seen under another shape or name; no kernel runs.
    Alias,
    /// Updates input 0 in place (an optimiser step); the output names the updated tensor.
    InPlace,
}

/// A tensor on the host in f64, for references.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl HostTensor {
    pub fn new(shape: &[usize], data: Vec<f64>) -> Self {
        assert_eq!(
            numel(shape),
            data.len(),
            "data does not fill shape {shape:?}"
        );
        Self {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn from_f32(shape: &[usize], data: &[f32]) -> Self {
        Self::new(shape, data.iter().map(|&v| f64::from(v)).collect())
    }

    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
}

/// A tensor as a kernel sees it: its shape and the buffer it lives in.
pub struct TensorRef<'a> {
    pub shape: &'a [usize],
    pub buffer: &'a wgpu::Buffer,
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

pub trait Op: std::fmt::Debug + Send + Sync {
    fn name(&self) -> String;

    fn kind(&self) -> OpKind {
        OpKind::Compute
    }

    /// The output shape for these input shapes, or what is wrong with them.
    fn output_shape(&self, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String>;

    /// Adds the nodes computing the gradient of each input from `dy`, the gradient of the
    /// output `y`; `None` where no gradient flows or `needs[i]` is false. By default an op has
    /// no gradient: gradient ops themselves (second derivatives are never taken) and in-place
    /// updates, which come after the loss.
    fn backward(
        &self,
        _g: &mut Graph,
        x: &[TensorId],
        _y: TensorId,
        _dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        assert!(!needs.iter().any(|&n| n), "{} has no gradient", self.name());
        vec![None; x.len()]
    }

    /// The output computed on the host in f64 (for `InPlace`, the new value of input 0).
    fn reference(&self, x: &[&HostTensor]) -> HostTensor;

    /// The kernel launches computing `y` from `x` (not called for `Alias` ops).
    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>>;

    /// The op's work at these shapes, for rooflines. By default one operation per element of
    /// the largest operand (element-wise ops, reductions and broadcasts); ops that
    /// multiply-accumulate say how many.
    fn work(&self, inputs: &[&[usize]], output: &[usize]) -> Work {
        let largest = inputs
            .iter()
            .map(|s| numel(s))
            .fold(numel(output), usize::max);
        Work::moving(inputs, output, largest as f64)
    }
}

/// What an op costs at least: its floating-point operations (a multiply-add counts 2) and the
/// bytes it must move (every input read once, the output written once). Kernels that store
/// partial sums (split-K) or read an input twice move more.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Work {
    pub flops: f64,
    pub bytes: f64,
}

impl Work {
    /// `flops` operations on f32 inputs and output of these shapes.
    pub fn moving(inputs: &[&[usize]], output: &[usize], flops: f64) -> Self {
        let floats: usize = inputs.iter().map(|s| numel(s)).sum::<usize>() + numel(output);
        Self {
            flops,
            bytes: 4.0 * floats as f64,
        }
    }
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Self) {
        self.flops += other.flops;
        self.bytes += other.bytes;
    }
}

/// Uniform parameters as 32-bit words: counts, then f32 constants, in the order the shader's
/// `Params` struct declares them.
#[derive(Default)]
pub struct Params(Vec<u32>);

impl Params {
    pub fn u(mut self, v: usize) -> Self {
        self.0.push(u32::try_from(v).expect("a size exceeds u32"));
        self
    }

    pub fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }

    /// Pads to `words` (a multiple of 4: uniform structs are 16-byte aligned).
    pub fn padded(mut self, words: usize) -> Vec<u32> {
        assert!(self.0.len() <= words);
        self.0.resize(words, 0);
        self.0
    }
}

/// Workgroups of 256 for one invocation per element of `n`.
pub(crate) fn per_element(n: usize) -> usize {
    n.div_ceil(crate::gpu::WORKGROUP_1D as usize)
}

/// The launch of `shader`'s `entry` over `groups` one-dimensional workgroups (folded into y past
/// the adapter's per-dimension limit; kernels read the linear index as wid.x + wid.y * nwg.x).
pub(crate) fn launch(
    gpu: &Gpu,
    (shader, entry): (&'static str, &'static str),
    params: &[u32],
    bindings: &[(u32, &wgpu::Buffer)],
    groups: usize,
) -> Result<Vec<Dispatch>> {
    let groups = u32::try_from(groups).expect("too many workgroups");
    let grid = crate::gpu::grid_1d(groups, gpu.limits.max_compute_workgroups_per_dimension);
    Ok(vec![gpu.dispatch(
        &crate::gpu::KernelKey::new(shader, entry),
        params,
        bindings,
        grid,
    )?])
}

/// Launch of an `elementwise.wgsl` entry over `n` outputs with constants s and t.
pub(crate) fn elementwise_st(
    gpu: &Gpu,
    entry: &'static str,
    n: usize,
    (mid, inner, s, t): (usize, usize, f32, f32),
    bindings: &[(u32, &wgpu::Buffer)],
) -> Result<Vec<Dispatch>> {
    let params = Params::default()
        .u(n)
        .u(mid)
        .u(inner)
        .u(0)
        .f(s)
        .f(t)
        .padded(8);
    launch(
        gpu,
        ("elementwise", entry),
        &params,
        bindings,
        per_element(n),
    )
}

/// Launch of an `elementwise.wgsl` entry over `n` outputs with one constant s.
pub(crate) fn elementwise(
    gpu: &Gpu,
    entry: &'static str,
    n: usize,
    (mid, inner, s): (usize, usize, f32),
    bindings: &[(u32, &wgpu::Buffer)],
) -> Result<Vec<Dispatch>> {
    elementwise_st(gpu, entry, n, (mid, inner, s, 0.0), bindings)
}

/// Checks that every input has the first input's shape.
pub(crate) fn same_shapes(
    name: &str,
    inputs: &[&[usize]],
) -> std::result::Result<Vec<usize>, String> {
    let first = inputs[0];
    for s in &inputs[1..] {
        if *s != first {
            return Err(format!(
                "{name} needs equal shapes, got {first:?} and {s:?}"
            ));
        }
    }
    Ok(first.to_vec())
}
