//! out = a + b, elementwise.

use super::{elementwise, numel, same_shapes, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug)]
pub struct Add;

impl Op for Add {
    fn name(&self) -> String {
        "add".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("add", x)
    }

    fn backward(
        &self,
        _: &mut Graph,
        _: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        needs.iter().map(|&n| n.then_some(dy)).collect()
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let data = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(a, b)| a + b)
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "add",
            numel(y.shape),
            (1, 1, 0.0),
            &[(1, x[0].buffer), (2, x[1].buffer), (3, y.buffer)],
        )
    }
}
