//! The gradients of the batch-norm transform.

use super::{check_channels, each, launch, launch_pointwise, launch_reduction, view, BnLaunch};
use crate::gpu::{Dispatch, Gpu};
use crate::ops::{numel, per_element, HostTensor, Op, TensorRef};
use crate::Result;

/// dy where the ReLU's output y is positive, else 0: the gradient a fused ReLU passes back.
fn masked(dy: f64, y: Option<&HostTensor>, i: usize) -> f64 {
    match y {
        Some(y) if y.data[i] <= 0.0 => 0.0,
        _ => dy,
    }
}

/// The shapes of (dy, x, mean, var, ...): dy and x alike, per-channel values after them.
fn check_grad_inputs(
    op: &str,
    x: &[&[usize]],
    per_channel: &[&[usize]],
) -> std::result::Result<usize, String> {
    if x[0] != x[1] {
        return Err(format!("{op}: {:?} and {:?} differ", x[0], x[1]));
    }
    check_channels(op, x[0], per_channel)
}

/// The two channel sums of batch norm's gradient in one pass: row 0 sum(dy) (d beta), row 1
/// sum(dy x_hat) (d gamma), with x_hat = (x - mean) / sqrt(var + eps); inputs (dy, x, mean,
/// var), and with `masked` the ReLU's output y, dy counting only where y > 0.
#[derive(Debug, Clone, Copy)]
pub struct BnGradSums {
    pub eps: f32,
    pub masked: bool,
}

impl Op for BnGradSums {
    fn name(&self) -> String {
        format!("bn_grad_sums(masked={})", self.masked)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let c = check_grad_inputs("bn_grad_sums", x, &x[2..4])?;
        if self.masked && x.get(4) != Some(&x[0]) {
            return Err(format!("bn_grad_sums: the mask must be shaped {:?}", x[0]));
        }
        Ok(vec![2, c])
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let c = x[2].data.len();
        let mut out = vec![0.0; 2 * c];
        let mask = x.get(4).copied();
        each(&x[0].shape, |i, ch| {
            let dy = masked(x[0].data[i], mask, i);
            out[ch] += dy;
            out[c + ch] += dy * (x[1].data[i] - x[2].data[ch]) / (x[3].data[ch] + eps).sqrt();
        });
        HostTensor::new(&[2, c], out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let l = BnLaunch::new(view(x[0].shape).unwrap(), self.eps, 0.0).flags(self.masked.into());
        // Unmasked, the mask's binding still needs a buffer: dy, never read.
        let mask = x.get(4).unwrap_or(&x[0]).buffer;
        if l.vec4() {
            let bindings = [
                (1, x[0].buffer),
                (2, x[1].buffer),
                (3, mask),
                (4, x[2].buffer),
                (5, x[3].buffer),
                (9, y.buffer),
            ];
            return launch_reduction(gpu, "bn_grad_sums4", l, &bindings);
        }
        let bindings = [
            (1, x[0].buffer),
            (2, x[1].buffer),
            (3, x[2].buffer),
            (4, x[3].buffer),
            (8, mask),
            (6, y.buffer),
        ];
        let entry = if l.columns() {
            "bn_grad_sums_columns"
        } else {
            "bn_grad_sums"
        };
        launch_reduction(gpu, entry, l, &bindings)
    }
}

/// dx of batch norm with batch statistics, through the mean and variance included:
/// gamma istd (dy - sum(dy) / M - x_hat sum(dy x_hat) / M) with istd = 1 / sqrt(var + eps),
/// x_hat = (x - mean) istd and M elements per channel; inputs (dy, x, mean, var, gamma, the
/// [2, C] sums of `BnGradSums`), and with `masked` the ReLU's output y, dy counting only where
/// y > 0.
#[derive(Debug, Clone, Copy)]
pub struct BnBatchStatsGrad {
    pub eps: f32,
    pub masked: bool,
}

impl Op for BnBatchStatsGrad {
    fn name(&self) -> String {
        format!("bn_batch_stats_grad(masked={})", self.masked)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let c = check_grad_inputs("bn_batch_stats_grad", x, &x[2..5])?;
        if x[5] != [2, c] {
            return Err(format!(
                "bn_batch_stats_grad: the sums must be [2, {c}], got {:?}",
                x[5]
            ));
        }
        if self.masked && x.get(6) != Some(&x[0]) {
            return Err(format!(
                "bn_batch_stats_grad: the mask must be shaped {:?}",
                x[0]
            ));
        }
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let eps = f64::from(self.eps);
        let (n, c, s) = view(&x[0].shape).unwrap();
        let m = (n * s) as f64;
        let (sums, mask) = (&x[5].data, x.get(6).copied());
        let mut out = vec![0.0; x[0].data.len()];
        each(&x[0].shape, |i, ch| {
            let istd = 1.0 / (x[3].data[ch] + eps).sqrt();
            let x_hat = (x[1].data[i] - x[2].data[ch]) * istd;
            let dy = masked(x[0].data[i], mask, i);
            out[i] = x[4].data[ch] * istd * (dy - sums[ch] / m - x_hat * sums[c + ch] / m);
        });
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let v = view(x[0].shape).unwrap();
        let l = BnLaunch::new(v, self.eps, 1.0 / (v.0 * v.2) as f32).flags(self.masked.into());
        let mask = x.get(6).unwrap_or(&x[0]).buffer;
        if l.vec4() {
            let bindings = [
                (1, x[0].buffer),
                (2, x[1].buffer),
                (3, mask),
                (4, x[2].buffer),
                (5, x[3].buffer),
                (6, x[4].buffer),
                (7, x[5].buffer),
                (8, y.buffer),
            ];
            return launch_pointwise(gpu, "bn_batch_stats_grad4", l, &bindings);
        }
        // Bindings 1-5 and 7-8: 6 is the output.
        let bindings = [
            (1, x[0].buffer),
            (2, x[1].buffer),
            (3, x[2].buffer),
            (4, x[3].buffer),
            (5, x[4].buffer),
            (7, x[5].buffer),
            (8, mask),
            (6, y.buffer),
        ];
        launch_pointwise(gpu, "bn_batch_stats_grad", l, &bindings)
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
            BnLaunch::new(v, self.eps, 0.0),
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
            BnLaunch::new(v, self.eps, 0.0),
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
            BnLaunch::new((1, c, 1), self.eps, 0.0),
            &bindings,
            per_element(c),
        )
    }
}
