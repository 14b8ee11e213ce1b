//! Compiling a plan's pipelines before its first run, several at once.
//!
//! Lavapipe compiles a pipeline's code at its first dispatch, on the one thread that runs the
//! device's queue: one pipeline after another, seconds each for the quick step's GEMMs (on an
//! empty shader cache, most of the time to the first step). Running every new kernel once, on
//! scratch buffers so that nothing of the plan's changes, moves that work ahead of the first
//! step; sibling devices on the same adapter take their share of the kernels on threads of
//! their own, and what they compile reaches this device through Mesa's shader cache on disk.
//! Without that cache their work is lost, and the device compiles those kernels at their first
//! real dispatch, as it would have.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Graph, NodeKind};
use crate::gpu::Gpu;
use crate::ops::{numel, TensorRef};
use crate::Result;

/// Runs the op of each node in `nodes` once on `gpu` or one of its siblings, whichever is free.
pub(super) fn compile(gpu: &Gpu, graph: &Graph, nodes: &[usize]) -> Result<()> {
    let next = AtomicUsize::new(0);
    let work = |device: &Gpu| -> Result<()> {
        while let Some(&node) = nodes.get(next.fetch_add(1, Ordering::Relaxed)) {
            run_on_scratch(device, graph, node)?;
        }
        Ok(())
    };
    let siblings = if nodes.len() > 1 { gpu.siblings() } else { &[] };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = siblings
            .iter()
            .map(|sibling| scope.spawn(|| work(sibling)))
            .collect();
        let own = work(gpu);
        helpers
            .into_iter()
            .map(|h| h.join().expect("a compiling thread panicked"))
            .fold(own, Result::and)
    })
}

/// The node's op on zeroed buffers of its shapes.
fn run_on_scratch(gpu: &Gpu, graph: &Graph, node: usize) -> Result<()> {
    let NodeKind::Op { op, inputs } = &graph.nodes()[node].kind else {
        return Ok(());
    };
    let scratch = |shape: &[usize]| gpu.storage_buffer("scratch", (numel(shape) * 4) as u64);
    let buffers = inputs
        .iter()
        .map(|t| scratch(graph.shape(*t)))
        .collect::<Result<Vec<_>>>()?;
    let args: Vec<TensorRef> = inputs
        .iter()
        .zip(&buffers)
        .map(|(t, buffer)| TensorRef {
            shape: graph.shape(*t),
            buffer,
        })
        .collect();
    let shape = &graph.nodes()[node].shape;
    let out = scratch(shape)?;
    let dispatches = op.encode(
        gpu,
        &args,
        &TensorRef {
            shape,
            buffer: &out,
        },
    )?;
    gpu.run(&dispatches)
}
