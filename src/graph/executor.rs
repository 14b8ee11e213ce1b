//! Compiles a graph for the device once, then runs it as one submission per step.
//!
//! At compile time: dead nodes are dropped; every intermediate gets a buffer from a plan by
//! liveness (a buffer is reused once the last reader of its previous tensor has run); every
//! pipeline, uniform and bind group is created, and on drivers that compile a pipeline's code
//! at its first dispatch the new ones are compiled (see `warm_up`). A run then writes the
//! inputs, encodes all dispatches into one compute pass, and reads back only the requested
//! outputs: either blocking (`run`) or later, without stalling the queue (`submit`, then
//! `collect`).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Graph, NodeKind, TensorId};
use crate::gpu::{Dispatch, Gpu};
use crate::ops::{numel, OpKind, TensorRef};
use crate::{Error, Result};

pub struct Executable {
    gpu: Arc<Gpu>,
    shapes: Vec<Vec<usize>>,
    names: Vec<String>,
    /// The buffer each live tensor lives in (aliases share their source's).
    slots: Vec<Option<usize>>,
    buffers: Vec<wgpu::Buffer>,
    /// Which tensors may be written and read by the caller: inputs and parameters.
    writable: Vec<bool>,
    dispatches: Vec<Dispatch>,
    /// How many of the graph's ops were run ahead of the first run to compile their kernels.
    compiled_ahead: usize,
    /// The first dispatch of each phase, and the end of the last.
    phase_bounds: Vec<usize>,
    outputs: Vec<TensorId>,
    /// Each output's byte offset in a staging buffer, and the total.
    output_offsets: Vec<u64>,
    output_bytes: u64,
    /// Staging buffers for submitted runs.
    ring: Mutex<Ring>,
}

struct Ring {
    /// A staging buffer each, and whether a run waits in it to be collected.
    slots: Vec<(wgpu::Buffer, bool)>,
    next: usize,
}

/// How many runs may be submitted before the oldest must be collected.
pub const IN_FLIGHT: usize = 3;

/// A submitted run whose outputs have not been collected yet.
#[must_use = "collect the outputs, or the staging slot stays taken"]
pub struct Pending {
    slot: usize,
    submission: wgpu::SubmissionIndex,
    mapped: Arc<AtomicBool>,
}

/// Liveness-planned buffer assignment: returns each node's slot and each slot's size in bytes.
fn plan_buffers(
    graph: &Graph,
    live: &[bool],
    outputs: &[TensorId],
) -> (Vec<Option<usize>>, Vec<u64>) {
    let n = graph.nodes().len();
    // Aliases and in-place updates share the buffer of their first input.
    let mut root: Vec<usize> = (0..n).collect();
    for (i, node) in graph.nodes().iter().enumerate() {
        if matches!(node.op_kind(), Some(OpKind::Alias | OpKind::InPlace)) {
            root[i] = root[node.inputs()[0].0];
        }
    }
    // The last node that reads each root's buffer; pinned roots are never freed.
    let mut last_use = vec![0usize; n];
    let mut pinned = vec![false; n];
    for (i, node) in graph.nodes().iter().enumerate() {
        if !live[i] {
            continue;
        }
        last_use[root[i]] = last_use[root[i]].max(i);
        for t in node.inputs() {
            last_use[root[t.0]] = last_use[root[t.0]].max(i);
        }
        if !matches!(node.kind, NodeKind::Op { .. }) {
            pinned[i] = true;
        }
    }
    for t in outputs {
        pinned[root[t.0]] = true;
    }

    let mut slots: Vec<Option<usize>> = vec![None; n];
    let mut sizes: Vec<u64> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for (i, node) in graph.nodes().iter().enumerate() {
        if !live[i] {
            continue;
        }
        if root[i] != i {
            slots[i] = slots[root[i]];
        } else {
            let bytes = (numel(&node.shape) * 4) as u64;
            // The smallest free buffer that fits, else a new one.
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| !pinned[i] && sizes[s] >= bytes)
                .min_by_key(|(_, &s)| sizes[s])
                .map(|(k, _)| k);
            slots[i] = Some(match best {
                Some(k) => free.swap_remove(k),
                None => {
                    sizes.push(bytes);
                    sizes.len() - 1
                }
            });
        }
        // Free the buffers whose last reader was this node (after allocating its output, so a
        // kernel never reads and writes the same buffer).
        for t in node.inputs().iter().map(|t| t.0).chain([i]) {
            let r = root[t];
            if !pinned[r] && last_use[r] == i {
                if let Some(s) = slots[r] {
                    if !free.contains(&s) {
                        free.push(s);
                    }
                }
            }
        }
    }
    (slots, sizes)
}

impl Executable {
    /// Plans buffers and records every dispatch for `graph`, which will return `outputs` on each run.
    pub fn new(gpu: &Arc<Gpu>, graph: &Graph, outputs: &[TensorId]) -> Result<Self> {
        let mut live = graph.live_nodes(outputs);
        // Inputs and parameters stay addressable even where no output needs them.
        for (i, node) in graph.nodes().iter().enumerate() {
            live[i] |= matches!(node.kind, NodeKind::Input | NodeKind::Param);
        }
        let (slots, sizes) = plan_buffers(graph, &live, outputs);
        let buffers = sizes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| gpu.storage_buffer(&format!("tensor slot {i}"), bytes))
            .collect::<Result<Vec<_>>>()?;

        let mut dispatches = Vec::new();
        // Each op node's dispatches, for the warm-up.
        let mut recorded = Vec::new();
        let mut phase_bounds = vec![0];
        let mut writable = vec![false; graph.nodes().len()];
        for (i, node) in graph.nodes().iter().enumerate() {
            if graph.phase_starts().contains(&i) {
                phase_bounds.push(dispatches.len());
            }
            if !live[i] {
                continue;
            }
            let slot = slots[i].expect("live nodes have slots");
            match &node.kind {
                NodeKind::Input | NodeKind::Param => writable[i] = true,
                NodeKind::Const(data) => gpu.write_f32(&buffers[slot], data),
                NodeKind::Op { op, inputs } => {
                    if op.kind() == OpKind::Alias {
                        continue;
                    }
                    let args: Vec<TensorRef> = inputs
                        .iter()
                        .map(|t| TensorRef {
                            shape: graph.shape(*t),
                            buffer: &buffers[slots[t.0].unwrap()],
                        })
                        .collect();
                    let out = TensorRef {
                        shape: &node.shape,
                        buffer: &buffers[slot],
                    };
                    let start = dispatches.len();
                    dispatches.extend(op.encode(gpu, &args, &out)?);
                    recorded.push((i, start..dispatches.len()));
                }
            }
        }
        let compiled_ahead = if gpu.compiles_at_first_dispatch() {
            super::warm_up::compile(gpu, graph, &dispatches, &recorded)?
        } else {
            0
        };

        phase_bounds.push(dispatches.len());
        let mut output_offsets = Vec::new();
        let mut output_bytes = 0u64;
        for t in outputs {
            output_offsets.push(output_bytes);
            output_bytes += (numel(graph.shape(*t)) * 4) as u64;
        }
        let ring = (0..IN_FLIGHT)
            .map(|_| {
                gpu.create_buffer(
                    "readback of the outputs",
                    output_bytes.max(4),
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                )
                .map(|b| (b, false))
            })
            .collect::<Result<Vec<_>>>()?;

        Ok(Self {
            gpu: gpu.clone(),
            shapes: graph.nodes().iter().map(|n| n.shape.clone()).collect(),
            names: graph.nodes().iter().map(|n| n.name.clone()).collect(),
            slots,
            buffers,
            writable,
            dispatches,
            compiled_ahead,
            phase_bounds,
            outputs: outputs.to_vec(),
            output_offsets,
            output_bytes,
            ring: Mutex::new(Ring {
                slots: ring,
                next: 0,
            }),
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// How many device buffers the tensors share (see the liveness plan).
    pub fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    /// How many ops were run once on scratch buffers while building, to compile kernels that
    /// the device had not compiled yet (0 where the driver compiles when pipelines are made).
    pub fn ops_compiled_ahead(&self) -> usize {
        self.compiled_ahead
    }

    /// How many kernel launches one run makes.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    fn check_writable(&self, t: TensorId, len: usize) -> Result<&wgpu::Buffer> {
        if !self.writable.get(t.0).copied().unwrap_or(false) {
            return Err(Error::Graph(format!(
                "'{}' is not an input or parameter of this executable",
                self.names.get(t.0).map_or("?", |s| s.as_str())
            )));
        }
        let expected = numel(&self.shapes[t.0]);
        if len != expected {
            return Err(Error::Graph(format!(
                "'{}' has shape {:?} ({expected} values), got {len} values",
                self.names[t.0], self.shapes[t.0]
            )));
        }
        Ok(&self.buffers[self.slots[t.0].unwrap()])
    }

    /// Uploads the value of an input or parameter; it stays until overwritten.
    pub fn write(&self, t: TensorId, data: &[f32]) -> Result<()> {
        let buffer = self.check_writable(t, data.len())?;
        self.gpu.write_f32(buffer, data);
        Ok(())
    }

    /// Downloads the current value of an input or parameter (waits for the device).
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>> {
        let buffer = self.check_writable(t, numel(&self.shapes[t.0]))?;
        self.gpu.read_f32(buffer, numel(&self.shapes[t.0]))
    }

    /// The current values of several inputs or parameters, one after another in one flat
    /// vector: copied in one submission (into as few staging buffers as the adapter's buffer
    /// size allows) and waited for.
    pub fn read_flat(&self, tensors: &[TensorId]) -> Result<Vec<f32>> {
        let max_bytes = self.gpu.device.limits().max_buffer_size;
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        // Consecutive tensors share a staging buffer while they fit: (tensors, bytes) each.
        let mut groups: Vec<(Vec<TensorId>, u64)> = Vec::new();
        for &t in tensors {
            let bytes = (numel(&self.shapes[t.0]) * 4) as u64;
            match groups.last_mut() {
                Some((g, size)) if *size + bytes <= max_bytes => {
                    g.push(t);
                    *size += bytes;
                }
                _ => groups.push((vec![t], bytes)),
            }
        }
        let mut staging: Vec<(wgpu::Buffer, usize)> = Vec::new();
        for (group, size) in &groups {
            let buffer = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("flat readback"),
                size: (*size).max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut offset = 0;
            for &t in group {
                let source = self.check_writable(t, numel(&self.shapes[t.0]))?;
                let bytes = (numel(&self.shapes[t.0]) * 4) as u64;
                encoder.copy_buffer_to_buffer(source, 0, &buffer, offset, bytes);
                offset += bytes;
            }
            staging.push((buffer, *size as usize / 4));
        }
        self.gpu.queue.submit([encoder.finish()]);
        let refs: Vec<(&wgpu::Buffer, usize)> = staging.iter().map(|(b, n)| (b, *n)).collect();
        Ok(self.gpu.map_read(&refs)?.concat())
    }

    /// Writes `values`, laid out as `read_flat` returns them, back into `tensors`.
    pub fn write_flat(&self, tensors: &[TensorId], values: &[f32]) -> Result<()> {
        let total: usize = tensors.iter().map(|t| numel(&self.shapes[t.0])).sum();
        if total != values.len() {
            return Err(Error::Graph(format!(
                "{} values for tensors of {total} values",
                values.len()
            )));
        }
        let mut start = 0;
        for &t in tensors {
            let n = numel(&self.shapes[t.0]);
            self.write(t, &values[start..start + n])?;
            start += n;
        }
        Ok(())
    }

    /// Every kernel launch of one run, in order.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// How many phases the graph has (see `Graph::start_phase`).
    pub fn phase_count(&self) -> usize {
        self.phase_bounds.len() - 1
    }

    /// The device buffer of an input, for kernels outside the graph that write it (the
    /// augmentations write the views).
    pub fn input_buffer(&self, t: TensorId) -> Result<&wgpu::Buffer> {
        self.check_writable(t, numel(&self.shapes[t.0]))
    }

    /// Encodes one run of all phases into `encoder` without submitting it.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.gpu.encode(encoder, &self.dispatches);
    }

    /// Feeds `inputs`, runs the graph in one submission and returns the outputs.
    pub fn run(&self, inputs: &[(TensorId, &[f32])]) -> Result<Vec<Vec<f32>>> {
        for &(t, data) in inputs {
            self.write(t, data)?;
        }
        let pending = self.submit(&[], 0..self.phase_count())?;
        self.collect(pending)
    }

    /// Submits `before` (kernels that prepare inputs) and then `phases` of the graph in one
    /// submission, with a copy of the outputs into a staging slot; returns at once. At most
    /// `IN_FLIGHT` runs may be waiting to be collected.
    pub fn submit(&self, before: &[Dispatch], phases: Range<usize>) -> Result<Pending> {
        let mut ring = self.ring.lock().expect("staging ring");
        let slot = ring.next;
        if ring.slots[slot].1 {
            return Err(Error::Graph(format!(
                "{IN_FLIGHT} runs are waiting to be collected; collect one before submitting"
            )));
        }
        ring.next = (slot + 1) % IN_FLIGHT;
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let range = self.phase_bounds[phases.start]..self.phase_bounds[phases.end];
        let work: Vec<&Dispatch> = before.iter().chain(&self.dispatches[range]).collect();
        self.gpu.encode_refs(&mut encoder, &work);
        let staging = &ring.slots[slot].0;
        for (t, &offset) in self.outputs.iter().zip(&self.output_offsets) {
            let bytes = (numel(&self.shapes[t.0]) * 4) as u64;
            encoder.copy_buffer_to_buffer(
                &self.buffers[self.slots[t.0].unwrap()],
                0,
                staging,
                offset,
                bytes,
            );
        }
        let submission = self.gpu.queue.submit([encoder.finish()]);
        let mapped = Arc::new(AtomicBool::new(false));
        let flag = mapped.clone();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            r.expect("mapping a staging buffer failed");
            flag.store(true, Ordering::Release);
        });
        ring.slots[slot].1 = true;
        Ok(Pending {
            slot,
            submission,
            mapped,
        })
    }

    /// Whether a submitted run has finished (never blocks).
    pub fn is_done(&self, pending: &Pending) -> bool {
        let _ = self.gpu.device.poll(wgpu::PollType::Poll);
        pending.mapped.load(Ordering::Acquire)
    }

    /// The outputs of a submitted run, waiting for that submission only (later ones keep the
    /// queue busy meanwhile).
    pub fn collect(&self, pending: Pending) -> Result<Vec<Vec<f32>>> {
        if !pending.mapped.load(Ordering::Acquire) {
            self.gpu
                .device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(pending.submission),
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(e.to_string()))?;
        }
        let mut ring = self.ring.lock().expect("staging ring");
        let staging = &ring.slots[pending.slot].0;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let floats = bytemuck::cast_slice::<u8, f32>(&view[..self.output_bytes as usize]);
        let out = self
            .outputs
            .iter()
            .zip(&self.output_offsets)
            .map(|(t, &offset)| {
                let start = offset as usize / 4;
                floats[start..start + numel(&self.shapes[t.0])].to_vec()
            })
            .collect();
        drop(view);
        staging.unmap();
        ring.slots[pending.slot].1 = false;
        Ok(out)
    }
}
