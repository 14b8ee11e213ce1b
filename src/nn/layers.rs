//! The layer builder: appends layers to a graph and records every parameter under its name.

use crate::graph::{Graph, TensorId};
use crate::ops::{batch_statistics, BnAct, BnApply, Conv2d, EmaUpdate};

/// Batch norm with the batch's statistics (and running-statistic updates), with the batch's
/// statistics alone, or with the running statistics alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    /// The batch's statistics, the running ones left as they are: a forward pass that watches
    /// a network in training without changing it.
    Watch,
    Eval,
}

/// What a parameter is, for optimisers (LARS excludes biases and batch-norm parameters from
/// weight decay and trust scaling) and for checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// Conv and linear weights: decayed and trust-scaled.
    Weight,
    /// Biases and batch-norm scale and shift: trained without decay or trust scaling.
    Bias,
    /// Batch-norm running statistics: updated by the forward pass, never by gradients.
    RunningStat,
    /// Optimiser state (momentum buffers).
    OptimizerState,
}

#[derive(Debug, Clone)]
pub struct NamedParam {
    pub name: String,
    pub id: TensorId,
    pub shape: Vec<usize>,
    pub role: ParamRole,
}

/// Batch-norm constants shared with PyTorch's defaults.
pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;

/// Appends layers to `graph`, naming parameters `prefix` + the layer's own name.
pub struct Layers<'g> {
    pub graph: &'g mut Graph,
    pub mode: Mode,
    pub params: Vec<NamedParam>,
    /// Prepended to every parameter name; a name seen before gets the same parameter, so a
    /// network applied twice (BYOL's two views) shares its weights.
    pub prefix: String,
    /// Every running-statistic update the forward passes make, in order: the statistic and
    /// the factor its old value is scaled by.
    pub running_updates: Vec<(TensorId, f32)>,
}

impl<'g> Layers<'g> {
    pub fn new(graph: &'g mut Graph, mode: Mode, prefix: &str) -> Self {
        Self {
            graph,
            mode,
            params: Vec::new(),
            prefix: prefix.to_string(),
            running_updates: Vec::new(),
        }
    }

    pub fn param(&mut self, name: &str, shape: &[usize], role: ParamRole) -> TensorId {
        let full = format!("{}{name}", self.prefix);
        if let Some(p) = self.params.iter().find(|p| p.name == full) {
            assert_eq!(
                p.shape, shape,
                "parameter '{full}' reused with another shape"
            );
            return p.id;
        }
        let id = self.graph.param(&full, shape);
        self.params.push(NamedParam {
            name: full,
            id,
            shape: shape.to_vec(),
            role,
        });
        id
    }

    /// A bias-free square convolution with `co` output channels.
    pub fn conv(
        &mut self,
        name: &str,
        x: TensorId,
        co: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> TensorId {
        let ci = self.graph.shape(x)[1];
        let w = self.param(
            &format!("{name}.weight"),
            &[co, ci, k, k],
            ParamRole::Weight,
        );
        self.graph.apply(Conv2d { stride, pad }, &[x, w])
    }

    /// Batch norm over the channels of [N, C] or [N, C, H, W].
    pub fn batch_norm(&mut self, name: &str, x: TensorId) -> TensorId {
        self.batch_norm_then(name, x, BnAct::Identity, &[])
    }

    /// relu(batch_norm(x)), in one kernel.
    pub fn batch_norm_relu(&mut self, name: &str, x: TensorId) -> TensorId {
        self.batch_norm_then(name, x, BnAct::Relu, &[])
    }

    /// relu(batch_norm(x) + residual): the end of a ResNet block, in one kernel.
    pub fn batch_norm_add_relu(&mut self, name: &str, x: TensorId, residual: TensorId) -> TensorId {
        self.batch_norm_then(name, x, BnAct::AddRelu, &[residual])
    }

    /// Batch norm followed by `act`, whose extra inputs (the residual) are `more`.
    fn batch_norm_then(
        &mut self,
        name: &str,
        x: TensorId,
        act: BnAct,
        more: &[TensorId],
    ) -> TensorId {
        let c = self.graph.shape(x)[1];
        let gamma = self.param(&format!("{name}.weight"), &[c], ParamRole::Bias);
        let beta = self.param(&format!("{name}.bias"), &[c], ParamRole::Bias);
        let running_mean = self.param(
            &format!("{name}.running_mean"),
            &[c],
            ParamRole::RunningStat,
        );
        let running_var = self.param(&format!("{name}.running_var"), &[c], ParamRole::RunningStat);
        let (mean, var, batch_stats) = match self.mode {
            Mode::Eval => (running_mean, running_var, false),
            Mode::Train | Mode::Watch => {
                let shape = self.graph.shape(x).to_vec();
                let (mean, var) = batch_statistics(self.graph, x);
                if self.mode == Mode::Train {
                    // PyTorch keeps the unbiased variance: M / (M - 1) times the batch's.
                    let m = shape[0] * shape[2..].iter().product::<usize>();
                    let unbias = m as f32 / (m.max(2) - 1) as f32;
                    let decay = 1.0 - BN_MOMENTUM;
                    self.graph
                        .apply(EmaUpdate { decay, scale: 1.0 }, &[running_mean, mean]);
                    self.graph.apply(
                        EmaUpdate {
                            decay,
                            scale: unbias,
                        },
                        &[running_var, var],
                    );
                    self.running_updates.push((running_mean, decay));
                    self.running_updates.push((running_var, decay));
                }
                (mean, var, true)
            }
        };
        let bn = BnApply {
            eps: BN_EPS,
            batch_stats,
            act,
        };
        let inputs = [&[x, mean, var, gamma, beta][..], more].concat();
        self.graph.apply(bn, &inputs)
    }

    /// x [N, in] -> [N, out] with weight [out, in] (PyTorch's layout) and an optional bias.
    pub fn linear(&mut self, name: &str, x: TensorId, out: usize, bias: bool) -> TensorId {
        let inputs = self.graph.shape(x)[1];
        let w = self.param(&format!("{name}.weight"), &[out, inputs], ParamRole::Weight);
        let y = self.graph.matmul_t(x, w, false, true);
        if bias {
            let b = self.param(&format!("{name}.bias"), &[out], ParamRole::Bias);
            self.graph.bias_add(y, b)
        } else {
            y
        }
    }

    /// Linear(bias) -> BatchNorm1d -> ReLU -> Linear(no bias): BYOL's projector and predictor,
    /// with the keys of an nn.Sequential (`0.*`, `1.*`, `3.*`).
    pub fn mlp_head(&mut self, x: TensorId, hidden: usize, out: usize) -> TensorId {
        let h = self.linear("0", x, hidden, true);
        let h = self.batch_norm_relu("1", h);
        self.linear("3", h, out, false)
    }
}
