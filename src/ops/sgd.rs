//! Plain gradient descent in place: w -= lr * g.

use super::{elementwise, numel, same_shapes, HostTensor, Op, OpKind, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::Result;

#[derive(Debug)]
pub struct SgdUpdate {
    pub lr: f32,
}

impl Op for SgdUpdate {
    fn name(&self) -> String {
        format!("sgd_update(lr={})", self.lr)
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("sgd_update", x)
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let lr = f64::from(self.lr);
        let data = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(w, g)| w - lr * g)
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "sgd_update",
            numel(x[0].shape),
            (1, 1, self.lr),
            &[(1, x[1].buffer), (3, x[0].buffer)],
        )
    }
}
