//! Max pooling (square window, stride, padding that never wins) and its gradient.

use super::{launch, per_element, HostTensor, Op, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Graph, TensorId};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl MaxPool2d {
    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }

    fn params(&self, x: &[usize]) -> Vec<u32> {
        let (h, w) = (x[2], x[3]);
        Params::default()
            .u(x[0] * x[1])
            .u(h)
            .u(w)
            .u(self.out_size(h))
            .u(self.out_size(w))
            .u(self.k)
            .u(self.stride)
            .u(self.pad)
            .padded(8)
    }

    /// Flat input index of the maximum of each output window (first in row-major order on ties).
    fn argmax(&self, x: &HostTensor) -> Vec<usize> {
        let [n, c, h, w] = x.shape[..] else {
            unreachable!("checked shapes")
        };
        let (ho, wo) = (self.out_size(h), self.out_size(w));
        let mut out = Vec::with_capacity(n * c * ho * wo);
        for plane in 0..n * c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut best: Option<usize> = None;
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            let (Some(y), Some(xx)) = (
                                (oy * self.stride + ky).checked_sub(self.pad),
                                (ox * self.stride + kx).checked_sub(self.pad),
                            ) else {
                                continue;
                            };
                            if y >= h || xx >= w {
                                continue;
                            }
                            let i = (plane * h + y) * w + xx;
                            if best.is_none_or(|b| x.data[i] > x.data[b]) {
                                best = Some(i);
                            }
                        }
                    }
                    out.push(best.expect("every window holds a pixel"));
                }
            }
        }
        out
    }
}

impl Op for MaxPool2d {
    fn name(&self) -> String {
        format!(
            "max_pool2d(k={}, stride={}, pad={})",
            self.k, self.stride, self.pad
        )
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        let &[n, c, h, w] = x[0] else {
            return Err(format!("max_pool2d needs [N, C, H, W], got {:?}", x[0]));
        };
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k || self.pad * 2 > self.k {
            return Err(format!(
                "max_pool2d: window {} with padding {} does not fit {h}x{w}",
                self.k, self.pad
            ));
        }
        Ok(vec![n, c, self.out_size(h), self.out_size(w)])
    }

    fn backward(
        &self,
        g: &mut Graph,
        x: &[TensorId],
        _: TensorId,
        dy: TensorId,
        needs: &[bool],
    ) -> Vec<Option<TensorId>> {
        vec![needs[0].then(|| g.apply(MaxPool2dGrad { pool: *self }, &[x[0], dy]))]
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let shape = self.output_shape(&[&x[0].shape]).unwrap();
        HostTensor::new(
            &shape,
            self.argmax(x[0]).iter().map(|&i| x[0].data[i]).collect(),
        )
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let params = self.params(x[0].shape);
        let groups = per_element(y.shape.iter().product());
        launch(
            gpu,
            ("pool", "maxpool_forward"),
            &params,
            &[(1, x[0].buffer), (3, y.buffer)],
            groups,
        )
    }
}

/// dx of max pooling: each window's gradient goes to its maximum; inputs (x, dy).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2dGrad {
    pub pool: MaxPool2d,
}

impl Op for MaxPool2dGrad {
    fn name(&self) -> String {
        "max_pool2d_grad".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        if self.pool.output_shape(&[x[0]])? != x[1] {
            return Err(format!(
                "max_pool2d_grad: {:?} is not the pooled shape of {:?}",
                x[1], x[0]
            ));
        }
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let mut out = vec![0.0; x[0].data.len()];
        for (o, i) in self.pool.argmax(x[0]).into_iter().enumerate() {
            out[i] += x[1].data[o];
        }
        HostTensor::new(&x[0].shape, out)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let bindings = [(1, x[0].buffer), (2, x[1].buffer), (3, y.buffer)];
        let groups = per_element(y.shape.iter().product());
        launch(
            gpu,
            ("pool", "maxpool_backward"),
            &self.pool.params(x[0].shape),
            &bindings,
            groups,
        )
    }
}
