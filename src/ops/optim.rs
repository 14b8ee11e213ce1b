//! The optimiser's ops: LARS (per-tensor norms, trust ratio, momentum, the step) and the target
//! network's EMA, in place, reading the step's learning rate and tau from a schedule tensor
//! [lr, tau] that the trainer writes every step.

use super::{launch, numel, per_element, HostTensor, Op, OpKind, Params, TensorRef};
use crate::gpu::{Dispatch, Gpu};
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
    /// Caps the trust ratio at 1 / lr, so that no tensor's rate exceeds the step's lr
    /// (solo-learn's `clip_lr`); at lr 0 the ratio is 1.
    pub clip: bool,
}

impl LarsParams {
    fn uniform(&self, n: usize) -> Vec<u32> {
        Params::default()
            .u(n)
            .u(usize::from(self.excluded))
            .u(usize::from(self.clip))
            .u(0)
            .f(self.momentum)
            .f(self.weight_decay)
            .f(self.eta)
            .padded(8)
    }
}

/// [sum w^2, sum (g + wd w)^2, sum g^2]; inputs (w, g). LARS reads the first two; the
/// training metrics (weight and gradient norms) the first and the last.
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
        Ok(vec![3])
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
        let gg = x[1].data.iter().map(|v| v * v).sum();
        HostTensor::new(&[3], vec![ww, uu, gg])
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], y: &TensorRef) -> Result<Vec<Dispatch>> {
        let lars = LarsParams {
            momentum: 0.0,
            weight_decay: self.weight_decay,
            eta: 0.0,
            excluded: false,
            clip: false,
        };
        launch(
            gpu,
            ("optim", "squared_norms"),
            &lars.uniform(numel(x[0].shape)),
            &[(1, x[0].buffer), (2, x[1].buffer), (4, y.buffer)],
            1,
        )
    }
}

/// The momentum buffer m <- momentum m + u (see optim.wgsl), in place; inputs (m, g, w, norms,
/// schedule [lr, tau]).
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
        if x[3] != [3] {
            return Err(format!("lars_momentum needs norms [3], got {:?}", x[3]));
        }
        if x[4] != [2] {
            return Err(format!(
                "lars_momentum needs the schedule [lr, tau], got {:?}",
                x[4]
            ));
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
        let lr = x[4].data[0];
        let trust = if !l.excluded && wn > 0.0 && un > 0.0 {
            let ratio = eta * wn / un;
            match (l.clip, lr > 0.0) {
                (false, _) => ratio,
                (true, true) => (ratio / lr).min(1.0),
                (true, false) => 1.0,
            }
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
            (5, x[4].buffer),
        ];
        launch(
            gpu,
            ("optim", "lars_momentum"),
            &self.0.uniform(n),
            &bindings,
            per_element(n),
        )
    }
}

/// What a scheduled in-place update does with the step's schedule [lr, tau].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledRule {
    /// The parameter w <- w - lr m, m the momentum buffer: LARS's step.
    Step,
    /// The target parameter xi <- tau xi + (1 - tau) theta, theta the online parameter.
    Ema,
}

/// An in-place update driven by the schedule; inputs (w, v, schedule) with v the momentum
/// buffer (`Step`) or the online parameter (`Ema`).
#[derive(Debug, Clone, Copy)]
pub struct ScheduledUpdate(pub ScheduledRule);

impl Op for ScheduledUpdate {
    fn name(&self) -> String {
        format!("scheduled_update({:?})", self.0)
    }

    fn kind(&self) -> OpKind {
        OpKind::InPlace
    }

    fn output_shape(&self, x: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
        super::same_shapes("scheduled_update", &x[..2])?;
        if x[2] != [2] {
            return Err(format!(
                "scheduled_update needs the schedule [lr, tau], got {:?}",
                x[2]
            ));
        }
        Ok(x[0].to_vec())
    }

    fn reference(&self, x: &[&HostTensor]) -> HostTensor {
        let (lr, tau) = (x[2].data[0], x[2].data[1]);
        let update = |(w, v): (&f64, &f64)| match self.0 {
            ScheduledRule::Step => w - lr * v,
            ScheduledRule::Ema => tau * w + (1.0 - tau) * v,
        };
        HostTensor::new(
            &x[0].shape,
            x[0].data.iter().zip(&x[1].data).map(update).collect(),
        )
    }

    fn encode(&self, gpu: &Gpu, x: &[TensorRef], _: &TensorRef) -> Result<Vec<Dispatch>> {
        let n = numel(x[0].shape);
        let entry = match self.0 {
            ScheduledRule::Step => "apply_update",
            ScheduledRule::Ema => "ema_target",
        };
        let bindings = [(1, x[1].buffer), (3, x[2].buffer), (4, x[0].buffer)];
        launch(
            gpu,
            ("optim", entry),
            &Params::default().u(n).padded(8),
            &bindings,
            per_element(n),
        )
    }
}
