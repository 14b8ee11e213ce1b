//! The BYOL regression loss per row: l = ||p_hat - z_hat||^2 = 2 - 2 cos(p, z), where
//! v_hat = v / max(||v||, eps) as torch.nn.functional.normalize.

use super::l2norm::{rownorm, rows_cols, NORM_EPS};
use super::{same_shapes, HostTensor, Op, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// Per-row norms, clamped at eps, and cosines of two matrices.
fn row_stats(p: &HostTensor, z: &HostTensor) -> Vec<(f64, f64, f64, f64)> {
    let (_, cols) = rows_cols(&p.shape);
    let eps = f64::from(NORM_EPS);
    p.data
        .chunks(cols)
        .zip(z.data.chunks(cols))
        .map(|(pr, zr)| {
            let np = pr.iter().map(|v| v * v).sum::<f64>().sqrt();
            let nz = zr.iter().map(|v| v * v).sum::<f64>().sqrt();
            let dot: f64 = pr.iter().zip(zr).map(|(a, b)| a * b).sum();
            (
                np,
                np.max(eps),
                nz.max(eps),
                dot / (np.max(eps) * nz.max(eps)),
            )
        })
        .collect()
}

/// Inputs (p, z) of shape [N, D]; output [N].
#[derive(Debug)]
pub struct ByolLoss;

impl Op for ByolLoss {
    fn name(&self) -> String {
        "byol_loss".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let s = same_shapes("byol_loss", x)?;
        if s.len() != 2 {
            return Err(format!("byol_loss needs [N, D] inputs, got {s:?}"));
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
        // The loss is symmetric in p and z, so one kernel serves both with the roles swapped.
        vec![
            needs[0].then(|| g.apply(ByolLossGrad, &[x[0], x[1], dy])),
            needs[1].then(|| g.apply(ByolLossGrad, &[x[1], x[0], dy])),
        ]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let data = row_stats(x[0], x[1])
            .iter()
            .map(|s| 2.0 - 2.0 * s.3)
            .collect();
        HostTensor::new(&[x[0].shape[0]], data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        rownorm(
            gpu,
            "byol_loss_forward",
            x[0].shape,
            &[(1, x[0].buffer), (2, x[1].buffer), (4, y.buffer)],
        )
    }
}

/// d loss / d p for inputs (p, z, dl) with dl of shape [N].
#[derive(Debug)]
pub struct ByolLossGrad;

impl Op for ByolLossGrad {
    fn name(&self) -> String {
        "byol_loss_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let s = same_shapes("byol_loss_grad", &x[..2])?;
        if s.len() != 2 || x[2] != [s[0]] {
            return Err(format!(
                "byol_loss_grad needs [N, D], [N, D], [N], got {x:?}"
            ));
        }
        Ok(s)
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (_, cols) = rows_cols(&x[0].shape);
        let eps = f64::from(NORM_EPS);
        let mut out = vec![0.0; x[0].data.len()];
        for (r, (np, npc, nzc, cos)) in row_stats(x[0], x[1]).into_iter().enumerate() {
            let scale = -2.0 * x[2].data[r] / npc;
            for j in 0..cols {
                let i = r * cols + j;
                let zh = x[1].data[i] / nzc;
                let d = if np > eps {
                    zh - cos * x[0].data[i] / npc
                } else {
                    zh
                };
                out[i] = scale * d;
            }
        }
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        rownorm(
            gpu,
            "byol_loss_backward",
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
