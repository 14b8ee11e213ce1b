//! out = s * x for a constant s.

use super::{elementwise, numel, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug)]
pub struct Scale(pub f32);

impl Op for Scale {
    fn name(&self) -> String {
        format!("scale({})", self.0)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(x[0].to_vec())
    }

    fn backward(
        &self,
        g: &mut Graph,
        _: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![needs[0].then(|| g.scale(dy, self.0))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let s = f64::from(self.0);
        HostTensor::new(&x[0].shape, x[0].data.iter().map(|v| s * v).collect())
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        elementwise(
            gpu,
            "scale",
            numel(y.shape),
            (1, 1, self.0),
            &[(1, x[0].buffer), (3, y.buffer)],
        )
    }
}
