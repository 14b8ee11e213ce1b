//! Summaries computed for the training metrics (no gradients).

use super::{launch, HostTensor, Op, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::Result;

/// [1]: the mean over the columns of [rows, cols] of each column's standard deviation over the
/// rows (unbiased). On L2-normalised projections it is about 1/sqrt(cols) when healthy and
/// near 0 when the representation has collapsed.
#[derive(Debug, Clone, Copy)]
pub struct ColumnStdMean;

impl Op for ColumnStdMean {
    fn name(&self) -> String {
        "column_std_mean".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        match x {
            [[rows, _]] if *rows >= 2 => Ok(vec![1]),
            _ => Err(format!(
                "column_std_mean takes one [rows >= 2, cols] matrix, got {x:?}"
            )),
        }
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (rows, cols) = (x[0].shape[0], x[0].shape[1]);
        let col = |j: usize| (0..rows).map(move |i| x[0].data[i * cols + j]);
        let total: f64 = (0..cols)
            .map(|j| {
                let mean = col(j).sum::<f64>() / rows as f64;
                let ss: f64 = col(j).map(|v| (v - mean).powi(2)).sum();
                (ss / (rows - 1) as f64).sqrt()
            })
            .sum();
        HostTensor::new(&[1], vec![total / cols as f64])
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let params = Params::default()
            .u(x[0].shape[0])
            .u(x[0].shape[1])
            .padded(4);
        launch(
            gpu,
            ("stats", "column_std_mean"),
            &params,
            &[(1, x[0].buffer), (4, y.buffer)],
            1,
        )
    }
}
