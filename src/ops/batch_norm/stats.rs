//! The batch statistics: per-channel sums, the mean and variance in one pass, and their
//! gradients.

use super::{check_channels, each, launch, launch_reduction, view, BnLaunch};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::ops::{numel, per_element, HostTensor, Op, TakeRow, TensorRef};
use crate::Result;

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
        let l = BnLaunch::new(view(x[0].shape).unwrap(), 0.0, self.scale);
        if l.vec4() {
            let bindings = [(1, x[0].buffer), (9, y.buffer)];
            return launch_reduction(gpu, "channel_sum4", l, &bindings);
        }
        let bindings = [(1, x[0].buffer), (6, y.buffer)];
        let entry = if l.columns() {
            "channel_sum_columns"
        } else {
            "channel_sum"
        };
        launch_reduction(gpu, entry, l, &bindings)
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
        let l = BnLaunch::new(view(&self.shape).unwrap(), 0.0, self.scale);
        let bindings = [(1, x[0].buffer), (6, y.buffer)];
        let groups = per_element(numel(&self.shape));
        launch(gpu, "channel_broadcast", l, &bindings, groups)
    }
}

/// The batch mean and the biased variance about it of each channel of x, in one pass over x:
/// out [2, C] = (mean; var). Each lane of the kernel sums its run about a value of the run and
/// the lanes' moments merge exactly (cascade.wgsl), so no difference of large sums decides the
/// variance. See `batch_statistics` for the two rows as tensors.
///
/// No gradient flows through it: the batch norm of training (`BnApply` with `batch_stats`)
/// computes dx through its statistics itself.
#[derive(Debug, Clone, Copy)]
pub struct ChannelMoments;

impl ChannelMoments {
    fn scale(shape: &[usize]) -> f32 {
        let (n, _, s) = view(shape).unwrap();
        1.0 / (n * s) as f32
    }
}

/// The batch mean and biased variance of x's channels ([N, C, ...]): `ChannelMoments` and its
/// two rows.
pub fn batch_statistics(g: &mut Graph, x: TensorId) -> (TensorId, TensorId) {
    let moments = g.apply(ChannelMoments, &[x]);
    (
        g.apply(TakeRow(0), &[moments]),
        g.apply(TakeRow(1), &[moments]),
    )
}

impl Op for ChannelMoments {
    fn name(&self) -> String {
        "channel_moments".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(vec![2, check_channels("channel_moments", x[0], &[])?])
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (_, c, _) = view(&x[0].shape).unwrap();
        let s = f64::from(Self::scale(&x[0].shape));
        let mut mean = vec![0.0; c];
        each(&x[0].shape, |i, ch| mean[ch] += x[0].data[i]);
        mean.iter_mut().for_each(|m| *m *= s);
        let mut var = vec![0.0; c];
        each(&x[0].shape, |i, ch| {
            var[ch] += (x[0].data[i] - mean[ch]).powi(2)
        });
        var.iter_mut().for_each(|v| *v *= s);
        HostTensor::new(&[2, c], [mean, var].concat())
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let l = BnLaunch::new(view(x[0].shape).unwrap(), 0.0, Self::scale(x[0].shape));
        if l.vec4() {
            let bindings = [(1, x[0].buffer), (9, y.buffer)];
            return launch_reduction(gpu, "channel_moments4", l, &bindings);
        }
        let bindings = [(1, x[0].buffer), (6, y.buffer)];
        let entry = if l.columns() {
            "channel_moments_columns"
        } else {
            "channel_moments"
        };
        launch_reduction(gpu, entry, l, &bindings)
    }
}
