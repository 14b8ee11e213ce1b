//! The batch-norm transform, with the ReLU and the residual add that follow it in a ResNet.

use super::{check_channels, each, launch_pointwise, view, BnLaunch};
use super::{BnBatchStatsGrad, BnGradSums, BnScaleGrad, BnStat, BnStatGrad};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::ops::{ChannelDotNormalized, ChannelSum, HostTensor, Op};
use crate::ops::{ReluGrad, TakeRow, TensorRef};
use crate::Result;

/// What follows the transform in the same kernel: nothing, a ReLU, or the residual add and a
/// ReLU (the end of a ResNet block). Fusing them saves a pass over the activation each, forward
/// and backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnAct {
    Identity,
    Relu,
    /// relu(bn(x) + r), with r the sixth input.
    AddRelu,
}

impl BnAct {
    /// The `flags` of bn_apply (RELU = 1, ADD = 2 in batchnorm.wgsl and batchnorm_vec4.wgsl).
    fn flags(self) -> u32 {
        match self {
            BnAct::Identity => 0,
            BnAct::Relu => 1,
            BnAct::AddRelu => 3,
        }
    }
}

/// y = act((x - mean) / sqrt(var + eps) * gamma + beta); inputs (x, mean, var, gamma, beta), and
/// the residual r for `BnAct::AddRelu`.
///
/// With `batch_stats`, mean and var must be x's batch statistics (`batch_statistics` of x): dx is then the whole derivative, through them included, computed in one
/// pass (`BnBatchStatsGrad`) after one pass for both channel sums (`BnGradSums`), and they get no
/// gradient of their own; a plain ReLU's gradient is folded into those two passes. Otherwise
/// they are inputs like any other (the running statistics of inference).
#[derive(Debug, Clone, Copy)]
pub struct BnApply {
    pub eps: f32,
    pub batch_stats: bool,
    pub act: BnAct,
}

impl BnApply {
    /// The transform alone.
    pub fn new(eps: f32, batch_stats: bool) -> Self {
        Self {
            eps,
            batch_stats,
            act: BnAct::Identity,
        }
    }

    /// The gradients of x, mean, var, gamma and beta from dz, the gradient of the transform's
    /// output; `mask`: the ReLU's output, where dz is still to be masked by it.
    fn transform_backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        dz: TensorId,
        mask: Option<TensorId>,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let (xs, mean, var, gamma) = (x[0], x[1], x[2], x[3]);
        let eps = self.eps;
        if self.batch_stats {
            if !(needs[0] || needs[3] || needs[4]) {
                return vec![None; 5];
            }
            let masked = mask.is_some();
            let sums_inputs = [&[dz, xs, mean, var][..], mask.as_slice()].concat();
            let sums = g.apply(BnGradSums { eps, masked }, &sums_inputs);
            let dx = needs[0].then(|| {
                let inputs = [&[dz, xs, mean, var, gamma, sums][..], mask.as_slice()].concat();
                g.apply(BnBatchStatsGrad { eps, masked }, &inputs)
            });
            return vec![
                dx,
                None,
                None,
                needs[3].then(|| g.apply(TakeRow(1), &[sums])),
                needs[4].then(|| g.apply(TakeRow(0), &[sums])),
            ];
        }
        let dz = match mask {
            Some(y) => g.apply(ReluGrad, &[y, dz]),
            None => dz,
        };
        // sum(dz x_hat) gives d gamma and d var; sum(dz) gives d beta and d mean.
        let dot = (needs[2] || needs[3])
            .then(|| g.apply(ChannelDotNormalized { eps }, &[dz, xs, mean, var]));
        let sum = (needs[1] || needs[4]).then(|| g.apply(ChannelSum { scale: 1.0 }, &[dz]));
        let dx = needs[0].then(|| g.apply(BnScaleGrad { eps }, &[dz, var, gamma]));
        let dmean = needs[1].then(|| {
            let stat = BnStat::Mean;
            g.apply(BnStatGrad { eps, stat }, &[sum.unwrap(), gamma, var])
        });
        let dvar = needs[2].then(|| {
            let stat = BnStat::Var;
            g.apply(BnStatGrad { eps, stat }, &[dot.unwrap(), gamma, var])
        });
        vec![dx, dmean, dvar, needs[3].then(|| dot.unwrap()), sum]
    }
}

impl Op for BnApply {
    fn name(&self) -> String {
        format!(
            "bn_apply(eps={}, batch_stats={}, act={:?})",
            self.eps, self.batch_stats, self.act
        )
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let inputs = if self.act == BnAct::AddRelu { 6 } else { 5 };
        if x.len() != inputs {
            return Err(format!(
                "bn_apply with {:?} takes {inputs} inputs",
                self.act
            ));
        }
        check_channels("bn_apply", x[0], &x[1..5])?;
        if self.act == BnAct::AddRelu && x[5] != x[0] {
            return Err(format!(
                "bn_apply: the residual {:?} differs from x {:?}",
                x[5], x[0]
            ));
        }
        Ok(x[0].to_vec())
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        y: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        match self.act {
            BnAct::Identity => self.transform_backward(g, x, dy, None, needs),
            BnAct::Relu => self.transform_backward(g, x, dy, Some(y), needs),
            // The residual takes the masked gradient too: it is formed once for both.
            BnAct::AddRelu => {
                let dz = g.apply(ReluGrad, &[y, dy]);
                let mut grads = self.transform_backward(g, x, dz, None, &needs[..5]);
                grads.push(needs[5].then_some(dz));
                grads
            }
        }
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let mut out = vec![0.0; x[0].data.len()];
        each(&x[0].shape, |i, c| {
            let z = (x[0].data[i] - x[1].data[c]) / (x[2].data[c] + eps).sqrt() * x[3].data[c]
                + x[4].data[c];
            out[i] = match self.act {
                BnAct::Identity => z,
                BnAct::Relu => z.max(0.0),
                BnAct::AddRelu => (z + x[5].data[i]).max(0.0),
            };
        });
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let l = BnLaunch::new(view(x[0].shape).unwrap(), self.eps, 0.0).flags(self.act.flags());
        // Without a residual its binding still needs a buffer: x, never read.
        let residual = x.get(5).unwrap_or(&x[0]).buffer;
        if l.vec4() {
            let bindings = [
                (1, x[0].buffer),
                (2, residual),
                (4, x[1].buffer),
                (5, x[2].buffer),
                (6, x[3].buffer),
                (7, x[4].buffer),
                (8, y.buffer),
            ];
            return launch_pointwise(gpu, "bn_apply4", l, &bindings);
        }
        let mut bindings: Vec<(u32, &wgpu::Buffer)> = x[..5]
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32 + 1, t.buffer))
            .collect();
        bindings.extend([(6, y.buffer), (7, residual)]);
        launch_pointwise(gpu, "bn_apply", l, &bindings)
    }
}
