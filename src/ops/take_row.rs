//! One row of a matrix as a tensor of its own: the parts of an op that computes several
//! per-channel results in one pass (`BnGradSums`).

use super::{elementwise, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::Result;

/// out = x[row, :] of a [R, C] x; a copy (C elements).
#[derive(Debug)]
pub struct TakeRow(pub usize);

impl Op for TakeRow {
    fn name(&self) -> String {
        format!("take_row({})", self.0)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        match x[0] {
            [rows, cols] if self.0 < *rows => Ok(vec![*cols]),
            s => Err(format!("take_row({}) of {s:?}", self.0)),
        }
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let cols = x[0].shape[1];
        let row = &x[0].data[self.0 * cols..(self.0 + 1) * cols];
        HostTensor::new(&[cols], row.to_vec())
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let cols = y.shape[0];
        elementwise(
            gpu,
            "take_row",
            cols,
            (self.0, 1, 0.0),
            &[(1, x[0].buffer), (3, y.buffer)],
        )
    }
}
