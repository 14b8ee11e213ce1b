//! Row-wise L2 normalisation, y = x / max(||x||, eps), as torch.nn.functional.normalize.

use super::{numel, same_shapes, HostTensor, Op, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

pub const NORM_EPS: f32 = 1e-12;

/// (rows, cols) of a matrix whose last axis is the row.
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = *shape.last().unwrap_or(&1);
    (numel(shape) / cols.max(1), cols)
}

/// Launch of a `rownorm.wgsl` entry: one workgroup per row.
pub(crate) fn rownorm(
    gpu: &Gpu,
    entry: &'static str,
    shape: &[usize],
    bindings: &[(u32, &wgpu::Buffer)],
) -> Result<Vec<Dispatch>> {
    let (rows, cols) = rows_cols(shape);
    let params = Params::default()
        .u(rows)
        .u(cols)
        .u(0)
        .u(0)
        .f(NORM_EPS)
        .padded(8);
    super::launch(gpu, ("rownorm", entry), &params, bindings, rows)
}

fn row_norms(x: &HostTensor) -> Vec<f64> {
    let (_, cols) = rows_cols(&x.shape);
    x.data
        .chunks(cols)
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect()
}

#[derive(Debug)]
pub struct L2Normalize;

impl Op for L2Normalize {
    fn name(&self) -> String {
        "l2_normalize".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if x[0].is_empty() {
            return Err("l2_normalize needs at least one axis".into());
        }
        Ok(x[0].to_vec())
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![needs[0].then(|| g.apply(L2NormalizeGrad, &[x[0], dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (_, cols) = rows_cols(&x[0].shape);
        let norms = row_norms(x[0]);
        let eps = f64::from(NORM_EPS);
        let data = x[0]
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| v / norms[i / cols].max(eps))
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        rownorm(
            gpu,
            "l2norm_forward",
            x[0].shape,
            &[(1, x[0].buffer), (4, y.buffer)],
        )
    }
}

/// The gradient of `L2Normalize` with respect to its input; inputs (x, dy).
#[derive(Debug)]
pub struct L2NormalizeGrad;

impl Op for L2NormalizeGrad {
    fn name(&self) -> String {
        "l2_normalize_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        same_shapes("l2_normalize_grad", x)
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (_, cols) = rows_cols(&x[0].shape);
        let eps = f64::from(NORM_EPS);
        let norms = row_norms(x[0]);
        let mut out = vec![0.0; x[0].data.len()];
        for (r, n) in norms.iter().enumerate() {
            let xs = &x[0].data[r * cols..(r + 1) * cols];
            let gs = &x[1].data[r * cols..(r + 1) * cols];
            let o = &mut out[r * cols..(r + 1) * cols];
            if *n > eps {
                let xg: f64 = xs.iter().zip(gs).map(|(a, b)| a * b).sum();
                for j in 0..cols {
                    o[j] = (gs[j] - xs[j] * xg / (n * n)) / n;
                }
            } else {
                for j in 0..cols {
                    o[j] = gs[j] / eps;
                }
            }
        }
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        rownorm(
            gpu,
            "l2norm_backward",
            x[0].shape,
            &[(1, x[0].buffer), (3, x[1].buffer), (4, y.buffer)],
        )
    }
}
