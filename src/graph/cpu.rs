//! The graph evaluated on the host in f64 with every op's reference: what the GPU executor is
//! tested against, node for node.

use super::{Graph, NodeKind, TensorId};
use crate::ops::{HostTensor, OpKind};

pub struct CpuRunner {
    graph: Graph,
    outputs: Vec<TensorId>,
    /// Parameter values, kept across runs like the executor's device buffers.
    params: Vec<Option<HostTensor>>,
}

impl CpuRunner {
    pub fn new(graph: &Graph, outputs: &[TensorId]) -> Self {
        Self {
            graph: graph.clone(),
            outputs: outputs.to_vec(),
            params: vec![None; graph.nodes.len()],
        }
    }

    pub fn set_param(&mut self, t: TensorId, data: &[f32]) {
        let shape = self.graph.shape(t);
        self.params[t.0] = Some(HostTensor::from_f32(shape, data));
    }

    pub fn param(&self, t: TensorId) -> &HostTensor {
        self.params[t.0].as_ref().expect("parameter not set")
    }

    /// Evaluates every node the outputs and effects need; returns the outputs.
    pub fn run(&mut self, inputs: &[(TensorId, &[f32])]) -> Vec<HostTensor> {
        let host: Vec<(TensorId, HostTensor)> = inputs
            .iter()
            .map(|&(t, data)| (t, HostTensor::from_f32(self.graph.shape(t), data)))
            .collect();
        self.run_f64(&host)
    }

    /// `run` with inputs in full precision (finite differences need it).
    pub fn run_f64(&mut self, inputs: &[(TensorId, HostTensor)]) -> Vec<HostTensor> {
        let live = self.graph.live_nodes(&self.outputs);
        let mut values: Vec<Option<HostTensor>> = vec![None; self.graph.nodes.len()];
        for (t, value) in inputs {
            assert_eq!(
                value.shape,
                self.graph.shape(*t),
                "shape of input '{}'",
                self.graph.node(*t).name
            );
            values[t.0] = Some(value.clone());
        }
        for (i, node) in self.graph.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            match &node.kind {
                NodeKind::Input => {
                    assert!(values[i].is_some(), "input '{}' was not fed", node.name);
                }
                NodeKind::Param => values[i] = self.params[i].clone(),
                NodeKind::Const(data) => values[i] = Some(HostTensor::from_f32(&node.shape, data)),
                NodeKind::Op { op, inputs } => {
                    let mut args: Vec<&HostTensor> = inputs
                        .iter()
                        .map(|t| values[t.0].as_ref().expect("input evaluated before use"))
                        .collect();
                    // An in-place update reads the parameter as earlier updates left it.
                    if op.kind() == OpKind::InPlace {
                        args[0] = self.params[inputs[0].0].as_ref().expect("parameter set");
                    }
                    let out = op.reference(&args);
                    if op.kind() == OpKind::InPlace {
                        self.params[inputs[0].0] = Some(out.clone());
                    }
                    values[i] = Some(out);
                }
            }
        }
        self.outputs
            .iter()
            .map(|t| values[t.0].clone().expect("output evaluated"))
            .collect()
    }
}
