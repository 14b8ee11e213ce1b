//! In-place linear updates of a tensor: the EMA w = decay * w + (1 - decay) * scale * x
//! (batch-norm running statistics, where scale corrects the batch variance to the unbiased one)
//! and w = a * w + b * x (gradient accumulation).

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

/// w = a * w + b * x, in place: a gradient accumulator adds b * g (a = 1) and is cleared
/// (a = b = 0) after the update that reads it.
#[derive(Debug, Clone, Copy)]
pub struct Accumulate {
    pub a: f32,
    pub b: f32,
}

impl Op for Accumulate {
    fn name(&self) -> String {
        format!("accumulate(a={}, b={})", self.a, self.b)
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("accumulate", x)
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (a, b) = (f64::from(self.a), f64::from(self.b));
        let data = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(w, v)| {
                if a == 0.0 && b == 0.0 {
                    0.0
                } else {
                    a * w + b * v
                }
            })
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        let n = numel(x[0].shape);
        if self.a == 0.0 && self.b == 0.0 {
            // x is not read (it may be the same buffer as the output).
            return elementwise_st(gpu, "fill_zero", n, (1, 1, 0.0, 0.0), &[(3, x[0].buffer)]);
        }
        elementwise_st(
            gpu,
            "ema_update",
            n,
            (1, 1, self.a, self.b),
            &[(1, x[1].buffer), (3, x[0].buffer)],
        )
    }
}
