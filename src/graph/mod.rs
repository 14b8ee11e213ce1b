//! Symbolic tensors with static shapes, the graph builder, autodiff as a graph-to-graph
//! transform, the GPU executor and a CPU f64 interpreter of the same graph.

mod autodiff;
mod cpu;
mod executor;
mod warm_up;

pub use cpu::CpuRunner;
pub use executor::{Executable, Pending, IN_FLIGHT};

use std::sync::Arc;

use crate::ops::{self, numel, Op, OpKind};
use crate::{Error, Result};

/// A tensor of a graph: an index into its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub(crate) usize);

impl TensorId {
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Fed by the caller on every run.
    Input,
    /// Lives on the device across runs; read and written by the caller, updated by in-place ops.
    Param,
    /// Fixed values, uploaded once.
    Const(Vec<f32>),
    Op {
        op: Arc<dyn Op>,
        inputs: Vec<TensorId>,
    },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: NodeKind,
}

impl Node {
    pub fn inputs(&self) -> &[TensorId] {
        match &self.kind {
            NodeKind::Op { inputs, .. } => inputs,
            _ => &[],
        }
    }

    pub fn op(&self) -> Option<&Arc<dyn Op>> {
        match &self.kind {
            NodeKind::Op { op, .. } => Some(op),
            _ => None,
        }
    }

    pub fn op_kind(&self) -> Option<OpKind> {
        self.op().map(|op| op.kind())
    }
}

/// A graph under construction. Nodes are appended in an order where every input precedes
/// its users, and that order is the execution order.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// In-place updates: run whenever the graph runs, whether or not an output needs them.
    effects: Vec<TensorId>,
    /// Node indices where a new phase starts (see `start_phase`).
    phase_starts: Vec<usize>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every tensor of the graph, in execution order.
    pub fn ids(&self) -> impl Iterator<Item = TensorId> {
        (0..self.nodes.len()).map(TensorId)
    }

    pub fn node(&self, t: TensorId) -> &Node {
        &self.nodes[t.0]
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.nodes[t.0].shape
    }

    pub fn effects(&self) -> &[TensorId] {
        &self.effects
    }

    fn push(&mut self, name: String, shape: Vec<usize>, kind: NodeKind) -> TensorId {
        self.nodes.push(Node { name, shape, kind });
        TensorId(self.nodes.len() - 1)
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.push(name.to_string(), shape.to_vec(), NodeKind::Input)
    }

    pub fn param(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.push(name.to_string(), shape.to_vec(), NodeKind::Param)
    }

    pub fn constant(&mut self, shape: &[usize], data: Vec<f32>) -> TensorId {
        assert_eq!(
            numel(shape),
            data.len(),
            "constant data does not fill {shape:?}"
        );
        self.push("const".into(), shape.to_vec(), NodeKind::Const(data))
    }

    /// Appends `op` applied to `inputs`, or says why the shapes do not fit.
    pub fn try_apply(&mut self, op: impl Op + 'static, inputs: &[TensorId]) -> Result<TensorId> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&t| self.shape(t)).collect();
        let shape = op
            .output_shape(&shapes)
            .map_err(|msg| Error::Shape { op: op.name(), msg })?;
        let name = op.name();
        let kind = op.kind();
        let t = self.push(
            name,
            shape,
            NodeKind::Op {
                op: Arc::new(op),
                inputs: inputs.to_vec(),
            },
        );
        if kind == OpKind::InPlace {
            if !matches!(self.node(inputs[0]).kind, NodeKind::Param) {
                return Err(Error::Graph(format!(
                    "{} updates '{}' in place, which is not a parameter",
                    self.node(t).name,
                    self.node(inputs[0]).name
                )));
            }
            self.effects.push(t);
        }
        Ok(t)
    }

    /// Like `try_apply`, for graphs whose shapes are fixed by construction: a mismatch is a
    /// bug in the model code, and panics with the op's message.
    pub fn apply(&mut self, op: impl Op + 'static, inputs: &[TensorId]) -> TensorId {
        self.try_apply(op, inputs).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn matmul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        self.apply(ops::MatMul::new(false, false), &[a, b])
    }

    pub fn matmul_t(&mut self, a: TensorId, b: TensorId, trans_a: bool, trans_b: bool) -> TensorId {
        self.apply(ops::MatMul::new(trans_a, trans_b), &[a, b])
    }

    pub fn add(&mut self, a: TensorId, b: TensorId) -> TensorId {
        self.apply(ops::Add, &[a, b])
    }

    pub fn mul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        self.apply(ops::Mul, &[a, b])
    }

    pub fn scale(&mut self, a: TensorId, s: f32) -> TensorId {
        self.apply(ops::Scale(s), &[a])
    }

    pub fn relu(&mut self, a: TensorId) -> TensorId {
        self.apply(ops::Relu, &[a])
    }

    pub fn bias_add(&mut self, x: TensorId, b: TensorId) -> TensorId {
        self.apply(ops::BiasAdd, &[x, b])
    }

    pub fn sum(&mut self, x: TensorId, axis: usize) -> TensorId {
        self.apply(ops::SumAxis { axis, scale: 1.0 }, &[x])
    }

    pub fn mean(&mut self, x: TensorId, axis: usize) -> TensorId {
        let n = self.shape(x).get(axis).copied().unwrap_or(1);
        self.apply(
            ops::SumAxis {
                axis,
                scale: 1.0 / n as f32,
            },
            &[x],
        )
    }

    pub fn l2_normalize(&mut self, x: TensorId) -> TensorId {
        self.apply(ops::L2Normalize, &[x])
    }

    pub fn byol_loss(&mut self, p: TensorId, z: TensorId) -> TensorId {
        self.apply(ops::ByolLoss, &[p, z])
    }

    pub fn reshape(&mut self, x: TensorId, shape: &[usize]) -> TensorId {
        self.apply(ops::Reshape(shape.to_vec()), &[x])
    }

    pub fn stop_gradient(&mut self, x: TensorId) -> TensorId {
        self.apply(ops::StopGradient, &[x])
    }

    /// Nodes added from now on belong to a new phase. An executable can run a range of phases
    /// (gradient accumulation runs the micro-batch phase N times, the update phase once); a
    /// later phase may read only inputs, parameters and its own nodes.
    pub fn start_phase(&mut self) {
        self.phase_starts.push(self.nodes.len());
    }

    pub fn phase_starts(&self) -> &[usize] {
        &self.phase_starts
    }

    /// w -= lr * g, in place, every run.
    pub fn sgd_update(&mut self, w: TensorId, g: TensorId, lr: f32) -> TensorId {
        self.apply(ops::SgdUpdate { lr }, &[w, g])
    }

    /// Gradients of the scalar `loss` with respect to each of `wrt` (see `autodiff`).
    pub fn grad(&mut self, loss: TensorId, wrt: &[TensorId]) -> Result<Vec<TensorId>> {
        autodiff::grad(self, loss, wrt)
    }

    /// The work of each kernel-launching op an `Executable` for `outputs` runs, by op family
    /// (the op's name up to its parameters), families in order of first appearance.
    pub fn work(&self, outputs: &[TensorId]) -> Vec<(String, crate::ops::Work)> {
        let live = self.live_nodes(outputs);
        let mut families: Vec<(String, crate::ops::Work)> = Vec::new();
        for (node, _) in self.nodes.iter().zip(&live).filter(|(_, &l)| l) {
            let NodeKind::Op { op, inputs } = &node.kind else {
                continue;
            };
            if op.kind() == crate::ops::OpKind::Alias {
                continue;
            }
            let shapes: Vec<&[usize]> = inputs.iter().map(|t| self.shape(*t)).collect();
            let work = op.work(&shapes, &node.shape);
            let name = op.name();
            let family = name.split('(').next().unwrap_or(&name);
            match families.iter_mut().find(|(f, _)| f == family) {
                Some((_, total)) => *total += work,
                None => families.push((family.to_string(), work)),
            }
        }
        families
    }

    /// The nodes that `roots` and the effects need, as a mask over all nodes.
    pub(crate) fn live_nodes(&self, roots: &[TensorId]) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        let mut stack: Vec<TensorId> = roots.iter().chain(&self.effects).copied().collect();
        while let Some(t) = stack.pop() {
            if !std::mem::replace(&mut live[t.0], true) {
                stack.extend_from_slice(self.node(t).inputs());
            }
        }
        live
    }
}
