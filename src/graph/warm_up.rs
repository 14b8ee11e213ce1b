//! Compiling a plan's pipelines before its first run, several at once.
//!
//! Lavapipe compiles a pipeline's code at its first dispatch, on the one thread that runs the
//! device's queue: one pipeline after another, seconds each for the quick step's GEMMs (on an
//! empty shader cache, most of the time to the first step). Running each new kernel once with
//! the smallest op that uses it, on scratch buffers so that nothing of the plan's changes, moves
//! that work ahead of the first step; sibling devices on the same adapter take their share of
//! the kernels on threads of their own, and what they compile reaches this device through Mesa's
//! shader cache on disk. Without that cache their work is lost, and the device compiles those
//! kernels at their first real dispatch, as it would have.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Graph;
use crate::gpu::{Dispatch, Gpu};
use crate::ops::{numel, TensorRef};
use crate::Result;

/// The most bytes of scratch buffers one op may take to be run ahead: the ops of larger shapes
/// leave their kernels to compile at the first run rather than hold memory the run may need.
const MAX_SCRATCH_BYTES: u64 = 256 << 20;

/// Runs once, on `gpu` or one of its siblings, whichever is free, the smallest op of each
/// kernel the device has not compiled: `recorded` pairs each op node with its range of
/// `dispatches`. Returns how many ops ran.
pub(super) fn compile(
    gpu: &Gpu,
    graph: &Graph,
    dispatches: &[Dispatch],
    recorded: &[(usize, Range<usize>)],
) -> Result<usize> {
    let mut by_size: Vec<(u64, usize, &Range<usize>)> = recorded
        .iter()
        .map(|(node, range)| (scratch_bytes(graph, *node), *node, range))
        .filter(|&(bytes, ..)| bytes <= MAX_SCRATCH_BYTES)
        .collect();
    by_size.sort_by_key(|&(bytes, node, _)| (bytes, node));
    let nodes: Vec<usize> = by_size
        .into_iter()
        .filter(|(_, _, range)| gpu.claim_uncompiled(&dispatches[(*range).clone()]))
        .map(|(_, node, _)| node)
        .collect();
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
    })?;
    Ok(nodes.len())
}

/// The bytes of a node's operands and result.
fn scratch_bytes(graph: &Graph, node: usize) -> u64 {
    let n = &graph.nodes()[node];
    let operands: usize = n.inputs().iter().map(|t| numel(graph.shape(*t))).sum();
    ((operands + numel(&n.shape)) * 4) as u64
}

/// The op node's op on zeroed buffers of its shapes.
fn run_on_scratch(gpu: &Gpu, graph: &Graph, node: usize) -> Result<()> {
    let n = &graph.nodes()[node];
    let op = n.op().expect("only op nodes are recorded");
    let scratch = |shape: &[usize]| gpu.storage_buffer("scratch", (numel(shape) * 4) as u64);
    let buffers = n
        .inputs()
        .iter()
        .map(|t| scratch(graph.shape(*t)))
        .collect::<Result<Vec<_>>>()?;
    let args: Vec<TensorRef> = n
        .inputs()
        .iter()
        .zip(&buffers)
        .map(|(t, buffer)| TensorRef {
            shape: graph.shape(*t),
            buffer,
        })
        .collect();
    let out = scratch(&n.shape)?;
    let dispatches = op.encode(
        gpu,
        &args,
        &TensorRef {
            shape: &n.shape,
            buffer: &out,
        },
    )?;
    gpu.run(&dispatches)
}
