//! Batch normalisation as small ops over x viewed as [N, C, S] (S = H*W, or 1 for [N, C]):
//! the batch mean, the variance about it, the normalise-and-scale transform, and their gradients.
//! Composed by `nn::BatchNorm`: training uses the batch's statistics, inference the running ones.

use super::{numel, per_element, HostTensor, Op, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// Elements per invocation of the kernels that read several per-channel values (`RUN` in
/// batchnorm.wgsl).
const RUN: usize = 4;

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

fn launch(
    gpu: &Gpu,
    entry: &'static str,
    (n, c, s): (usize, usize, usize),
    (eps, scale): (f32, f32),
    bindings: &[(u32, &wgpu::Buffer)],
    groups: usize,
) -> Result<Vec<Dispatch>> {
    let params = Params::default()
        .u(n)
        .u(c)
        .u(s)
        .u(0)
        .f(eps)
        .f(scale)
        .padded(8);
    super::launch(gpu, ("batchnorm", entry), &params, bindings, groups)
}

/// Host loop over (element index, channel) of a [N, C, S] view.
fn each(shape: &[usize], mut f: impl FnMut(usize, usize)) {
    let (n, c, s) = view(shape).expect("checked shapes");
    for i in 0..n * c * s {
        f(i, (i / s) % c);
    }
}

/// out[c] = scale * sum of x over batch and space (the mean when scale = 1/M).
#[derive(Debug, Clone, Copy)]
pub struct ChannelSum {
    pub scale: f32,
}

impl ChannelSum {
    pub fn mean_of(shape: &[usize]) -> Self {
        let (n, _, s) = view(shape).expect("a [N, C, ...] tensor");
        Self {
            scale: 1.0 / (n * s) as f32,
        }
    }
}

impl Op for ChannelSum {
    fn name(&self) -> String {
        format!("channel_sum(scale={})", self.scale)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(vec![check_channels("channel_sum", x[0], &[])?])
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let shape = g.shape(x[0]).to_vec();
        vec![needs[0].then(|| {
            g.apply(
                ChannelBroadcast {
                    shape,
                    scale: self.scale,
                },
                &[dy],
            )
        })]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (_, c, _) = view(&x[0].shape).unwrap();
        let mut out = vec![0.0; c];
        each(&x[0].shape, |i, ch| out[ch] += x[0].data[i]);
        out.iter_mut().for_each(|v| *v *= f64::from(self.scale));
        HostTensor::new(&[c], out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        launch(
            gpu,
            "channel_sum",
            v,
            (0.0, self.scale),
            &[(1, x[0].buffer), (6, y.buffer)],
            v.1,
        )
    }
}

/// out = scale * g[c] spread over a tensor of `shape`.
#[derive(Debug, Clone)]
pub struct ChannelBroadcast {
    pub shape: Vec<usize>,
    pub scale: f32,
}

impl Op for ChannelBroadcast {
    fn name(&self) -> String {
        format!("channel_broadcast({:?}, scale={})", self.shape, self.scale)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        check_channels("channel_broadcast", &self.shape, &[x[0]])?;
        Ok(self.shape.clone())
    }

    fn backward(
        &self,
        g: &mut Graph,
        _: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![needs[0].then(|| g.apply(ChannelSum { scale: self.scale }, &[dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let mut out = vec![0.0; numel(&self.shape)];
        each(&self.shape, |i, c| {
            out[i] = f64::from(self.scale) * x[0].data[c]
        });
        HostTensor::new(&self.shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(&self.shape).unwrap();
        launch(
            gpu,
            "channel_broadcast",
            v,
            (0.0, self.scale),
            &[(1, x[0].buffer), (6, y.buffer)],
            per_element(numel(&self.shape)),
        )
    }
}

/// The biased variance of x about `mean`, per channel; inputs (x, mean). `mean` must be the
/// batch mean of x (`ChannelSum::mean_of`): the gradient to it, -2/M sum(x - mean) dvar, is then
/// exactly zero and is not formed.
#[derive(Debug, Clone, Copy)]
pub struct CenteredVar;

impl CenteredVar {
    fn scale(shape: &[usize]) -> f32 {
        let (n, _, s) = view(shape).unwrap();
        1.0 / (n * s) as f32
    }
}

impl Op for CenteredVar {
    fn name(&self) -> String {
        "centered_var".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(vec![check_channels("centered_var", x[0], &[x[1]])?])
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let scale = Self::scale(g.shape(x[0]));
        vec![
            needs[0].then(|| g.apply(CenteredVarGrad { scale }, &[x[0], x[1], dy])),
            None,
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let c = x[1].data.len();
        let mut out = vec![0.0; c];
        each(&x[0].shape, |i, ch| {
            out[ch] += (x[0].data[i] - x[1].data[ch]).powi(2)
        });
        let s = f64::from(Self::scale(&x[0].shape));
        HostTensor::new(&[c], out.iter().map(|v| v * s).collect())
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        let bindings = [(1, x[0].buffer), (2, x[1].buffer), (6, y.buffer)];
        launch(
            gpu,
            "channel_centered_square",
            v,
            (0.0, Self::scale(x[0].shape)),
            &bindings,
            v.1,
        )
    }
}

/// dx of `CenteredVar`: 2 scale dvar[c] (x - mean[c]); inputs (x, mean, dvar).
#[derive(Debug, Clone, Copy)]
pub struct CenteredVarGrad {
    pub scale: f32,
}

impl Op for CenteredVarGrad {
    fn name(&self) -> String {
        "centered_var_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        check_channels("centered_var_grad", x[0], &[x[1], x[2]])?;
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let s = 2.0 * f64::from(self.scale);
        let mut out = vec![0.0; x[0].data.len()];
        each(&x[0].shape, |i, c| {
            out[i] = s * x[2].data[c] * (x[0].data[i] - x[1].data[c])
        });
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        let bindings = [
            (1, x[0].buffer),
            (2, x[1].buffer),
            (3, x[2].buffer),
            (6, y.buffer),
        ];
        launch(
            gpu,
            "centered_square_grad",
            v,
            (0.0, self.scale),
            &bindings,
            per_element(numel(x[0].shape)),
        )
    }
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta; inputs (x, mean, var, gamma, beta).
///
/// With `batch_stats`, mean and var must be x's batch statistics (`ChannelSum::mean_of` and
/// `CenteredVar` of x): dx is then the whole derivative, through them included, computed in one
/// pass (`BnBatchStatsGrad`), and they get no gradient of their own. Otherwise they are inputs
/// like any other (the running statistics of inference).
#[derive(Debug, Clone, Copy)]
pub struct BnApply {
    pub eps: f32,
    pub batch_stats: bool,
}

impl Op for BnApply {
    fn name(&self) -> String {
        format!(
            "bn_apply(eps={}, batch_stats={})",
            self.eps, self.batch_stats
        )
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        check_channels("bn_apply", x[0], &x[1..])?;
        Ok(x[0].to_vec())
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let (xs, mean, var, gamma) = (x[0], x[1], x[2], x[3]);
        let eps = self.eps;
        // sum(dy x_hat) gives d gamma and d var; sum(dy) gives d beta and d mean.
        let dot = (needs[2] || needs[3] || (self.batch_stats && needs[0]))
            .then(|| g.apply(ChannelDotNormalized { eps }, &[dy, xs, mean, var]));
        let sum = (needs[1] || needs[4] || (self.batch_stats && needs[0]))
            .then(|| g.apply(ChannelSum { scale: 1.0 }, &[dy]));
        if self.batch_stats {
            let dx = needs[0].then(|| {
                g.apply(
                    BnBatchStatsGrad { eps },
                    &[dy, xs, mean, var, gamma, sum.unwrap(), dot.unwrap()],
                )
            });
            return vec![
                dx,
                None,
                None,
                needs[3].then(|| dot.unwrap()),
                needs[4].then(|| sum.unwrap()),
            ];
        }
        let dx = needs[0].then(|| g.apply(BnScaleGrad { eps }, &[dy, var, gamma]));
        let dmean = needs[1].then(|| {
            g.apply(
                BnStatGrad {
                    eps,
                    stat: BnStat::Mean,
                },
                &[sum.unwrap(), gamma, var],
            )
        });
        let dvar = needs[2].then(|| {
            g.apply(
                BnStatGrad {
                    eps,
                    stat: BnStat::Var,
                },
                &[dot.unwrap(), gamma, var],
            )
        });
        vec![
            dx,
            dmean,
            dvar,
            needs[3].then(|| dot.unwrap()),
            needs[4].then(|| sum.unwrap()),
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let mut out = vec![0.0; x[0].data.len()];
        each(&x[0].shape, |i, c| {
            out[i] = (x[0].data[i] - x[1].data[c]) / (x[2].data[c] + eps).sqrt() * x[3].data[c]
                + x[4].data[c];
        });
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        let mut bindings: Vec<(u32, &wgpu::Buffer)> = x
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32 + 1, t.buffer))
            .collect();
        bindings.push((6, y.buffer));
        launch(
            gpu,
            "bn_apply",
            v,
            (self.eps, 0.0),
            &bindings,
            per_element(numel(x[0].shape).div_ceil(RUN)),
        )
    }
}

/// dx of batch norm with batch statistics, through the mean and variance included:
/// gamma istd (dy - sum(dy) / M - x_hat sum(dy x_hat) / M) with istd = 1 / sqrt(var + eps),
/// x_hat = (x - mean) istd and M elements per channel; inputs (dy, x, mean, var, gamma,
/// sum(dy), sum(dy x_hat)).
#[derive(Debug, Clone, Copy)]
pub struct BnBatchStatsGrad {
    pub eps: f32,
}

impl Op for BnBatchStatsGrad {
    fn name(&self) -> String {
        "bn_batch_stats_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if x[0] != x[1] {
            return Err(format!(
                "bn_batch_stats_grad: {:?} and {:?} differ",
                x[0], x[1]
            ));
        }
        check_channels("bn_batch_stats_grad", x[0], &x[2..])?;
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let (n, _, s) = view(&x[0].shape).unwrap();
        let m = (n * s) as f64;
        let mut out = vec![0.0; x[0].data.len()];
        each(&x[0].shape, |i, c| {
            let istd = 1.0 / (x[3].data[c] + eps).sqrt();
            let x_hat = (x[1].data[i] - x[2].data[c]) * istd;
            out[i] =
                x[4].data[c] * istd * (x[0].data[i] - x[5].data[c] / m - x_hat * x[6].data[c] / m);
        });
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        // Bindings 1-5 and 7-8: 6 is the output.
        let mut bindings: Vec<(u32, &wgpu::Buffer)> = x
            .iter()
            .zip([1, 2, 3, 4, 5, 7, 8])
            .map(|(t, binding)| (binding, t.buffer))
            .collect();
        bindings.push((6, y.buffer));
        launch(
            gpu,
            "bn_batch_stats_grad",
            v,
            (self.eps, 1.0 / (v.0 * v.2) as f32),
            &bindings,
            per_element(numel(x[0].shape).div_ceil(RUN)),
        )
    }
}

/// dy * gamma / sqrt(var + eps); inputs (dy, var, gamma).
#[derive(Debug, Clone, Copy)]
pub struct BnScaleGrad {
    pub eps: f32,
}

impl Op for BnScaleGrad {
    fn name(&self) -> String {
        "bn_scale_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        check_channels("bn_scale_grad", x[0], &x[1..])?;
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let mut out = vec![0.0; x[0].data.len()];
        each(&x[0].shape, |i, c| {
            out[i] = x[0].data[i] * x[2].data[c] / (x[1].data[c] + eps).sqrt()
        });
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        let bindings = [
            (1, x[0].buffer),
            (2, x[1].buffer),
            (3, x[2].buffer),
            (6, y.buffer),
        ];
        launch(
            gpu,
            "bn_scale_grad",
            v,
            (self.eps, 0.0),
            &bindings,
            per_element(numel(x[0].shape)),
        )
    }
}

/// sum over the channel of dy (x - mean) / sqrt(var + eps); inputs (dy, x, mean, var).
#[derive(Debug, Clone, Copy)]
pub struct ChannelDotNormalized {
    pub eps: f32,
}

impl Op for ChannelDotNormalized {
    fn name(&self) -> String {
        "channel_dot_normalized".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if x[0] != x[1] {
            return Err(format!(
                "channel_dot_normalized: {:?} and {:?} differ",
                x[0], x[1]
            ));
        }
        Ok(vec![check_channels(
            "channel_dot_normalized",
            x[0],
            &x[2..],
        )?])
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let c = x[2].data.len();
        let mut out = vec![0.0; c];
        each(&x[0].shape, |i, ch| {
            out[ch] += x[0].data[i] * (x[1].data[i] - x[2].data[ch]) / (x[3].data[ch] + eps).sqrt()
        });
        HostTensor::new(&[c], out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        let bindings = [
            (1, x[0].buffer),
            (2, x[1].buffer),
            (3, x[2].buffer),
            (4, x[3].buffer),
            (6, y.buffer),
        ];
        launch(
            gpu,
            "channel_dot_normalized",
            v,
            (self.eps, 0.0),
            &bindings,
            v.1,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnStat {
    Mean,
    Var,
}

/// The gradient of the batch statistics, per channel; inputs (s, gamma, var) where s is
/// sum(dy) for the mean (-gamma istd s) and sum(dy x_hat) for the variance (-gamma istd^2 s / 2).
#[derive(Debug, Clone, Copy)]
pub struct BnStatGrad {
    pub eps: f32,
    pub stat: BnStat,
}

impl Op for BnStatGrad {
    fn name(&self) -> String {
        format!("bn_stat_grad({:?})", self.stat)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if x[0].len() != 1 || x.iter().any(|s| *s != x[0]) {
            return Err(format!("bn_stat_grad needs three [C] tensors, got {x:?}"));
        }
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let data = (0..x[0].data.len())
            .map(|c| {
                let istd = 1.0 / (x[2].data[c] + eps).sqrt();
                match self.stat {
                    BnStat::Mean => -x[1].data[c] * istd * x[0].data[c],
                    BnStat::Var => -0.5 * x[1].data[c] * istd * istd * x[0].data[c],
                }
            })
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let c = x[0].shape[0];
        let entry = match self.stat {
            BnStat::Mean => "bn_grad_mean",
            BnStat::Var => "bn_grad_var",
        };
        let bindings = [
            (1, x[0].buffer),
            (2, x[1].buffer),
            (3, x[2].buffer),
            (6, y.buffer),
        ];
        launch(
            gpu,
            entry,
            (1, c, 1),
            (self.eps, 0.0),
            &bindings,
            per_element(c),
        )
    }
}
