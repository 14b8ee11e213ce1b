//! ReLU, and its gradient expressed through the ReLU's output.

use super::{elementwise, numel, same_shapes, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// out = max(x, 0).
#[derive(Debug)]
pub struct Relu;

impl Op for Relu {
    fn name(&self) -> String {
        "relu".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(x[0].to_vec())
    }

    fn backward(
        &self,
        g: &mut Graph,
        _: &[TensorId],
        y: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![needs[0].then(|| g.apply(ReluGrad, &[y, dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        HostTensor::new(&x[0].shape, x[0].data.iter().map(|v| v.max(0.0)).collect())
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "relu",
            numel(y.shape),
            (1, 1, 0.0),
            &[(1, x[0].buffer), (3, y.buffer)],
        )
    }
}

/// out = dy where y > 0, else 0; inputs (y, dy) with y the ReLU's output.
/// Its own gradient is never needed (ReLU's second derivative is zero almost everywhere).
#[derive(Debug)]
pub struct ReluGrad;

impl Op for ReluGrad {
    fn name(&self) -> String {
        "relu_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("relu_grad", x)
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![None, needs[1].then(|| g.apply(ReluGrad, &[x[0], dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let data = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(y, g)| if *y > 0.0 { *g } else { 0.0 })
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "relu_grad",
            numel(y.shape),
            (1, 1, 0.0),
            &[(1, x[0].buffer), (2, x[1].buffer), (3, y.buffer)],
        )
    }
}
