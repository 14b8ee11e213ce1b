//! out[n, d] = x[n, d] + b[d]: the bias of a linear layer.

use super::{elementwise, numel, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug)]
pub struct BiasAdd;

impl Op for BiasAdd {
    fn name(&self) -> String {
        "bias_add".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        match (x[0], x[1]) {
            ([_, d], [db]) if d == db => Ok(x[0].to_vec()),
            _ => Err(format!(
                "bias_add needs [N, D] and [D], got {:?} and {:?}",
                x[0], x[1]
            )),
        }
    }

    fn backward(
        &self,
        g: &mut Graph,
        _: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![needs[0].then_some(dy), needs[1].then(|| g.sum(dy, 0))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let d = x[1].data.len();
        let data = x[0]
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| v + x[1].data[i % d])
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "bias_add",
            numel(y.shape),
            (x[1].shape[0], 1, 0.0),
            &[(1, x[0].buffer), (2, x[1].buffer), (3, y.buffer)],
        )
    }
}
