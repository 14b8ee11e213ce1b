//! The batch statistics: per-channel sums and the variance about the mean, and their gradients.

use super::{check_channels, each, launch, launch_vec4, view, BnLaunch};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::ops::{numel, per_element, HostTensor, Op, TensorRef};
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
            return launch_vec4(gpu, "channel_sum4", l, &bindings, l.reduction_groups());
        }
        let bindings = [(1, x[0].buffer), (6, y.buffer)];
        let entry = if l.columns() {
            "channel_sum_columns"
        } else {
            "channel_sum"
        };
        launch(gpu, entry, l, &bindings, l.reduction_groups())
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
        let l = BnLaunch::new(view(x[0].shape).unwrap(), 0.0, Self::scale(x[0].shape));
        if l.vec4() {
            let bindings = [(1, x[0].buffer), (4, x[1].buffer), (9, y.buffer)];
            return launch_vec4(
                gpu,
                "channel_centered_square4",
                l,
                &bindings,
                l.reduction_groups(),
            );
        }
        let bindings = [(1, x[0].buffer), (2, x[1].buffer), (6, y.buffer)];
        let entry = if l.columns() {
            "channel_centered_square_columns"
        } else {
            "channel_centered_square"
        };
        launch(gpu, entry, l, &bindings, l.reduction_groups())
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
        let l = BnLaunch::new(v, 0.0, self.scale);
        launch(
            gpu,
            "centered_square_grad",
            l,
            &bindings,
            per_element(numel(x[0].shape)),
        )
    }
}
