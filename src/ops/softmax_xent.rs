//! Softmax cross-entropy per row, l = logsumexp(x) sum(y) - <y, x>, for the linear
//! classifier of the evaluation; y is a target distribution (one-hot labels).

use super::l2norm::{rownorm, rows_cols};
use super::{same_shapes, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// Per row: the max, the sum of exp(x - max), the sum of y, and <y, x>.
fn row_stats(x: &HostTensor, y: &HostTensor) -> Vec<(f64, f64, f64, f64)> {
    let (_, cols) = rows_cols(&x.shape);
    x.data
        .chunks(cols)
        .zip(y.data.chunks(cols))
        .map(|(xr, yr)| {
            let m = xr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let se = xr.iter().map(|v| (v - m).exp()).sum();
            let sy = yr.iter().sum();
            let dot = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
            (m, se, sy, dot)
        })
        .collect()
}

/// Inputs (logits, targets) of shape [N, K]; output [N]. No gradient flows to the targets
/// (they are data).
#[derive(Debug)]
pub struct SoftmaxCrossEntropy;

impl Op for SoftmaxCrossEntropy {
    fn name(&self) -> String {
        "softmax_cross_entropy".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let s = same_shapes("softmax_cross_entropy", x)?;
        if s.len() != 2 {
            return Err(format!(
                "softmax_cross_entropy needs [N, K] inputs, got {s:?}"
            ));
        }
        Ok(vec![s[0]])
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
            needs[0].then(|| g.apply(SoftmaxCrossEntropyGrad, &[x[0], x[1], dy])),
            None,
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let data = row_stats(x[0], x[1])
            .iter()
            .map(|&(m, se, sy, dot)| (m + se.ln()) * sy - dot)
            .collect();
        HostTensor::new(&[x[0].shape[0]], data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        rownorm(
            gpu,
            "softmax_xent_forward",
            x[0].shape,
            &[(1, x[0].buffer), (2, x[1].buffer), (4, y.buffer)],
        )
    }
}

/// d loss / d logits for inputs (logits, targets, dl) with dl of shape [N].
#[derive(Debug)]
pub struct SoftmaxCrossEntropyGrad;

impl Op for SoftmaxCrossEntropyGrad {
    fn name(&self) -> String {
        "softmax_cross_entropy_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let s = same_shapes("softmax_cross_entropy_grad", &x[..2])?;
        if s.len() != 2 || x[2] != [s[0]] {
            return Err(format!(
                "softmax_cross_entropy_grad needs [N, K], [N, K], [N], got {x:?}"
            ));
        }
        Ok(s)
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (_, cols) = rows_cols(&x[0].shape);
        let mut out = vec![0.0; x[0].data.len()];
        for (r, (m, se, sy, _)) in row_stats(x[0], x[1]).into_iter().enumerate() {
            for j in 0..cols {
                let i = r * cols + j;
                out[i] = x[2].data[r] * ((x[0].data[i] - m).exp() / se * sy - x[1].data[i]);
            }
        }
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        rownorm(
            gpu,
            "softmax_xent_backward",
            x[0].shape,
            &[
                (1, x[0].buffer),
                (2, x[1].buffer),
                (3, x[2].buffer),
                (4, y.buffer),
            ],
        )
    }
}
