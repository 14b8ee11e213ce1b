//! Sum over one axis (scaled: the mean is a sum scaled by 1/n), and its adjoint, the
//! broadcast along a new axis.

use super::{elementwise, launch, numel, per_element, HostTensor, Op, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

/// Splits `shape` around `axis` into (outer, mid, inner) element counts.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// out = scale * sum over `axis` of x; the axis is removed from the shape.
#[derive(Debug)]
pub struct SumAxis {
    pub axis: usize,
    pub scale: f32,
}

impl Op for SumAxis {
    fn name(&self) -> String {
        format!("sum(axis={}, scale={})", self.axis, self.scale)
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if self.axis >= x[0].len() {
            return Err(format!("axis {} out of range for {:?}", self.axis, x[0]));
        }
        let mut s = x[0].to_vec();
        s.remove(self.axis);
        Ok(s)
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let len = g.shape(x[0])[self.axis];
        let op = BroadcastAxis {
            axis: self.axis,
            len,
            scale: self.scale,
        };
        vec![needs[0].then(|| g.apply(op, &[dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (outer, mid, inner) = split(&x[0].shape, self.axis);
        let mut out = vec![0.0; outer * inner];
        for o in 0..outer {
            for m in 0..mid {
                for i in 0..inner {
                    out[o * inner + i] += x[0].data[(o * mid + m) * inner + i];
                }
            }
        }
        let s = f64::from(self.scale);
        out.iter_mut().for_each(|v| *v *= s);
        let shape = self.output_shape(&[&x[0].shape]).unwrap();
        HostTensor::new(&shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let (outer, mid, inner) = split(x[0].shape, self.axis);
        let params = Params::default()
            .u(outer)
            .u(mid)
            .u(inner)
            .u(0)
            .f(self.scale)
            .padded(8);
        let outputs = outer * inner;
        // Long sums into few outputs get a workgroup each; otherwise one invocation per output.
        let (entry, groups) = if mid >= 256 && outputs <= 4096 {
            ("sum_axis_group", outputs)
        } else {
            ("sum_axis_thread", per_element(outputs))
        };
        launch(
            gpu,
            ("reduce", entry),
            &params,
            &[(1, x[0].buffer), (3, y.buffer)],
            groups,
        )
    }
}

/// out = scale * x repeated `len` times along a new axis at `axis`.
#[derive(Debug)]
pub struct BroadcastAxis {
    pub axis: usize,
    pub len: usize,
    pub scale: f32,
}

impl Op for BroadcastAxis {
    fn name(&self) -> String {
        format!(
            "broadcast(axis={}, len={}, scale={})",
            self.axis, self.len, self.scale
        )
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if self.axis > x[0].len() {
            return Err(format!("axis {} out of range for {:?}", self.axis, x[0]));
        }
        let mut s = x[0].to_vec();
        s.insert(self.axis, self.len);
        Ok(s)
    }

    fn backward(
        &self,
        g: &mut Graph,
        _: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        let op = SumAxis {
            axis: self.axis,
            scale: self.scale,
        };
        vec![needs[0].then(|| g.apply(op, &[dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let shape = self.output_shape(&[&x[0].shape]).unwrap();
        let (outer, mid, inner) = split(&shape, self.axis);
        let s = f64::from(self.scale);
        let mut out = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for _ in 0..mid {
                out.extend(x[0].data[o * inner..(o + 1) * inner].iter().map(|v| s * v));
            }
        }
        HostTensor::new(&shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let (_, mid, inner) = split(y.shape, self.axis);
        elementwise(
            gpu,
            "broadcast_axis",
            numel(y.shape),
            (mid, inner, self.scale),
            &[(1, x[0].buffer), (3, y.buffer)],
        )
    }
}
