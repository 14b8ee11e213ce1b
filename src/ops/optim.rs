//! The optimiser's ops: LARS (per-tensor norms, trust ratio, momentum, the step) and the target
//! network's EMA, in place, reading the step's learning rate and tau from a schedule tensor
//! [lr, tau] that the trainer writes every step.

use super::{elementwise_grid, numel, HostTensor, Op, OpKind, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu, KernelKey};
use crate::Result;

/// LARS's constants for one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LarsParams {
    pub momentum: f32,
    pub weight_decay: f32,
    /// The trust coefficient; 0 turns LARS into SGD with momentum and weight decay.
    pub eta: f32,
    /// Biases and batch-norm parameters: no weight decay and no trust ratio.
    pub excluded: bool,
}

impl LarsParams {
    fn uniform(&self, n: usize) -> Vec<u32> {
        Params::default()
            .u(n)
            .u(usize::from(self.excluded))
            .u(0)
            .u(0)
            .f(self.momentum)
            .f(self.weight_decay)
            .f(self.eta)
            .padded(8)
    }
}

fn launch(
    gpu: &Gpu,
    entry: &'static str,
    uniform: &[u32],
    bindings: &[(u32, &wgpu::Buffer)],
    grid: [u32; 3],
) -> Result<Vec<Dispatch>> {
    Ok(vec![gpu.dispatch(
        &KernelKey::new("optim", entry),
        uniform,
        bindings,
        grid,
    )?])
}

/// [sum w^2, sum (g + wd w)^2]; inputs (w, g).
#[derive(Debug, Clone, Copy)]
pub struct SquaredNorms {
    pub weight_decay: f32,
}

impl Op for SquaredNorms {
    fn name(&self) -> String {
        "squared_norms".into()
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        super::same_shapes("squared_norms", x)?;
        Ok(vec![2])
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let wd = f64::from(self.weight_decay);
        let ww = x[0].data.iter().map(|v| v * v).sum();
        let uu = x[0]
            .data
            .iter()
            .zip(&x[1].data)
            .map(|(w, g)| (g + wd * w).powi(2))
            .sum();
        HostTensor::new(&[2], vec![ww, uu])
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let lars = LarsParams {
            momentum: 0.0,
            weight_decay: self.weight_decay,
            eta: 0.0,
            excluded: false,
        };
        launch(
            gpu,
            "squared_norms",
            &lars.uniform(numel(x[0].shape)),
            &[(1, x[0].buffer), (2, x[1].buffer), (4, y.buffer)],
            [1, 1, 1],
        )
    }
}

/// The momentum buffer m <- momentum m + u (see optim.wgsl), in place; inputs (m, g, w, norms).
#[derive(Debug, Clone, Copy)]
pub struct LarsMomentum(pub LarsParams);

impl Op for LarsMomentum {
    fn name(&self) -> String {
        format!("lars_momentum({:?})", self.0)
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        super::same_shapes("lars_momentum", &x[..3])?;
        if x[3] != [2] {
            return Err(format!("lars_momentum needs norms [2], got {:?}", x[3]));
        }
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let l = &self.0;
        let (wd, eta, mom) = (
            f64::from(l.weight_decay),
            f64::from(l.eta),
            f64::from(l.momentum),
        );
        let (wn, un) = (x[3].data[0].sqrt(), x[3].data[1].sqrt());
        let trust = if !l.excluded && wn > 0.0 && un > 0.0 {
            eta * wn / un
        } else {
            1.0
        };
        let data = (0..x[0].data.len())
            .map(|i| {
                let u = if l.excluded {
                    x[1].data[i]
                } else {
                    (x[1].data[i] + wd * x[2].data[i]) * trust
                };
                mom * x[0].data[i] + u
            })
            .collect();
        HostTensor::new(&x[0].shape, data)
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        let n = numel(x[0].shape);
        let bindings = [
            (1, x[2].buffer),
            (2, x[1].buffer),
            (3, x[3].buffer),
            (4, x[0].buffer),
        ];
        launch(
            gpu,
            "lars_momentum",
            &self.0.uniform(n),
            &bindings,
            elementwise_grid(gpu, n),
        )
    }
}

/// The parameter w <- w - lr m, in place; inputs (w, m, schedule [lr, tau]).
#[derive(Debug, Clone, Copy)]
pub struct ApplyUpdate;

impl Op for ApplyUpdate {
    fn name(&self) -> String {
        "apply_update".into()
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        super::same_shapes("apply_update", &x[..2])?;
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let lr = x[2].data[0];
        HostTensor::new(
            &x[0].shape,
            x[0].data
                .iter()
                .zip(&x[1].data)
                .map(|(w, m)| w - lr * m)
                .collect(),
        )
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        let n = numel(x[0].shape);
        let uniform = Params::default().u(n).padded(8);
        launch(
            gpu,
            "apply_update",
            &uniform,
            &[(1, x[1].buffer), (3, x[2].buffer), (4, x[0].buffer)],
            elementwise_grid(gpu, n),
        )
    }
}

/// The target parameter xi <- tau xi + (1 - tau) theta, in place; inputs (xi, theta, schedule).
#[derive(Debug, Clone, Copy)]
pub struct EmaTarget;

impl Op for EmaTarget {
    fn name(&self) -> String {
        "ema_target".into()
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        super::same_shapes("ema_target", &x[..2])?;
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let tau = x[2].data[1];
        HostTensor::new(
            &x[0].shape,
            x[0].data
                .iter()
                .zip(&x[1].data)
                .map(|(xi, th)| tau * xi + (1.0 - tau) * th)
                .collect(),
        )
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        let n = numel(x[0].shape);
        let uniform = Params::default().u(n).padded(8);
        launch(
            gpu,
            "ema_target",
            &uniform,
            &[(2, x[1].buffer), (3, x[2].buffer), (4, x[0].buffer)],
            elementwise_grid(gpu, n),
        )
    }
}
