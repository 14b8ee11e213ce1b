//! out = a * b, elementwise.

use super::{elementwise, numel, same_shapes, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug)]
pub struct Mul;

impl Op for Mul {
    fn name(&self) -> String {
        "mul".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("mul", x)
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![
            needs[0].then(|| g.mul(dy, x[1])),
            needs[1].then(|| g.mul(dy, x[0])),
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let data = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(a, b)| a * b)
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "mul",
            numel(y.shape),
            (1, 1, 0.0),
            &[(1, x[0].buffer), (2, x[1].buffer), (3, y.buffer)],
        )
    }
}
