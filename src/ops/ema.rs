//! w = decay * w + (1 - decay) * scale * x, in place: batch-norm running statistics (scale
//! corrects the batch variance to the unbiased one) and the target network's weights.

use super::{elementwise_st, numel, same_shapes, HostTensor, Op, OpKind, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::Result;

#[derive(Debug, Clone, Copy)]
pub struct EmaUpdate {
    pub decay: f32,
    pub scale: f32,
}

impl Op for EmaUpdate {
    fn name(&self) -> String {
        format!("ema_update(decay={}, scale={})", self.decay, self.scale)
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("ema_update", x)
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (d, s) = (f64::from(self.decay), f64::from(self.scale));
        let data = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(w, v)| d * w + (1.0 - d) * s * v)
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        let t = (1.0 - self.decay) * self.scale;
        elementwise_st(
            gpu,
            "ema_update",
            numel(x[0].shape),
            (1, 1, self.decay, t),
            &[(1, x[1].buffer), (3, x[0].buffer)],
        )
    }
}
