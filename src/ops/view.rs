//! Ops that only rename a buffer: reshape, and stop-gradient (identity forward, no backward).

use super::{numel, HostTensor, Op, OpKind, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug)]
pub struct Reshape(pub Vec<usize>);

impl Op for Reshape {
    fn name(&self) -> String {
        format!("reshape({:?})", self.0)
    }

    fn kind(&self) -> OpKind {
        OpKind::Alias
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if numel(x[0]) == numel(&self.0) {
            Ok(self.0.clone())
        } else {
            Err(format!("cannot reshape {:?} to {:?}", x[0], self.0))
        }
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
        vec![needs[0].then(|| g.reshape(dy, &shape))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        HostTensor::new(&self.0, x[0].data.clone())
    }

    fn encode(&self, _: &Gpu, _: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
}

#[derive(Debug)]
pub struct StopGradient;

impl Op for StopGradient {
    fn name(&self) -> String {
        "stop_gradient".into()
    }

    fn kind(&self) -> OpKind {
        OpKind::Alias
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        Ok(x[0].to_vec())
    }

    fn backward(
        &self,
        _: &mut Graph,
        _: &[TensorId],
        _: TensorId,
        _: TensorId,
        _: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![None]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        x[0].clone()
    }

    fn encode(&self, _: &Gpu, _: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
}
