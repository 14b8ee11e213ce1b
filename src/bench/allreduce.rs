//! What keeping data-parallel replicas equal costs per optimiser step, for each preset's
//! networks: the bytes the ranks sum (the gradient accumulators of the online networks and
//! of the online probe), the time to read them off this adapter and write them back, and the
//! time of the sum itself over the processes mpirun started (none alone).

use std::time::Instant;

use serde::Serialize;

use super::median;
use crate::byol::{ByolStep, StepOptions};
use crate::gpu::Gpu;
use crate::parallel::Group;
use crate::train::TrainConfig;
use crate::Result;

/// The presets measured, with the images they train on: channels, side, classes.
const PRESETS: [(&str, usize, usize, usize); 4] = [
    ("tiny", 1, 28, 10),
    ("quick", 1, 28, 10),
    ("small", 3, 32, 10),
    ("imagenet", 3, 224, 1000),
];

/// Device buffers of at most this many bytes hold the measured gradients.
const CHUNK_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct AllreduceRow {
    pub preset: String,
    /// f32 values summed per step.
    pub floats: usize,
    pub megabytes: f64,
    /// Reading them off the device, and writing the sums back (median ms).
    pub read_ms: f64,
    pub write_ms: f64,
    /// The sum over the ranks (median ms); None alone.
    pub allreduce_ms: Option<f64>,
    /// 2 (N - 1) / N x bytes / time: the bandwidth each rank's link sustained in a ring
    /// allreduce (NCCL's "bus bandwidth").
    pub bus_gbps: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AllreduceReport {
    pub adapter: String,
    pub ranks: usize,
    pub rows: Vec<AllreduceRow>,
}

/// The values one step sums for `preset` (its networks and a probe over `classes` classes).
pub fn gradient_floats(
    preset: &str,
    channels: usize,
    side: usize,
    classes: usize,
) -> Result<usize> {
    let config = TrainConfig::preset(preset)?;
    let step = ByolStep::build(
        &config.nets(channels)?,
        2,
        [channels, side, side],
        &config.lars(),
        StepOptions {
            accumulate: 2,
            probe_classes: Some(classes),
        },
    )?;
    Ok(step.accumulator_floats())
}

/// Measures every preset `repeats` times; every rank of `group` must call it.
pub fn allreduce_report(gpu: &Gpu, group: &Group, repeats: usize) -> Result<AllreduceReport> {
    let mut rows = Vec::new();
    for (preset, channels, side, classes) in PRESETS {
        let floats = gradient_floats(preset, channels, side, classes)?;
        let chunk = (CHUNK_BYTES.min(gpu.limits.max_buffer_size) / 4) as usize;
        let buffers = (0..floats.div_ceil(chunk))
            .map(|i| {
                let len = chunk.min(floats - i * chunk);
                Ok((gpu.storage_buffer("gradients", (len * 4) as u64)?, len))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut host = vec![1.0f32; floats];
        let (mut reads, mut writes, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            let mut start = 0;
            for (b, len) in &buffers {
                gpu.write_f32(b, &host[start..start + len]);
                start += len;
            }
            gpu.queue.submit([]);
            gpu.wait()?;
            writes.push(t.elapsed().as_secs_f64());

            let t = Instant::now();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            let staging: Vec<(wgpu::Buffer, usize)> = buffers
                .iter()
                .map(|(b, len)| {
                    let s = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("gradients readback"),
                        size: (len * 4) as u64,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    encoder.copy_buffer_to_buffer(b, 0, &s, 0, (len * 4) as u64);
                    (s, *len)
                })
                .collect();
            gpu.queue.submit([encoder.finish()]);
            let refs: Vec<(&wgpu::Buffer, usize)> = staging.iter().map(|(s, n)| (s, *n)).collect();
            host = gpu.map_read(&refs)?.concat();
            reads.push(t.elapsed().as_secs_f64());

            group.barrier();
            let t = Instant::now();
            group.sum_f32(&mut host);
            sums.push(t.elapsed().as_secs_f64());
            // Keep the values small: the sum of N ones, back to one.
            host.fill(1.0);
        }
        let bytes = (floats * 4) as f64;
        let n = group.size();
        let allreduce = (n > 1).then(|| median(&mut sums));
        rows.push(AllreduceRow {
            preset: preset.into(),
            floats,
            megabytes: bytes / 1e6,
            read_ms: 1e3 * median(&mut reads),
            write_ms: 1e3 * median(&mut writes),
            allreduce_ms: allreduce.map(|s| 1e3 * s),
            bus_gbps: allreduce.map(|s| 2.0 * (n - 1) as f64 / n as f64 * bytes / s / 1e9),
        });
    }
    Ok(AllreduceReport {
        adapter: gpu.info.name.clone(),
        ranks: group.size(),
        rows,
    })
}

impl AllreduceReport {
    pub fn table(&self) -> String {
        let mut t = format!(
            "gradient sums per optimiser step, {} rank(s), adapter {}\n{:<10} {:>11} {:>9} {:>9} {:>9} {:>13} {:>9}\n",
            self.ranks, self.adapter, "preset", "floats", "MB", "read ms", "write ms", "allreduce ms", "bus GB/s"
        );
        for r in &self.rows {
            let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
            t.push_str(&format!(
                "{:<10} {:>11} {:>9.1} {:>9.1} {:>9.1} {:>13} {:>9}\n",
                r.preset,
                r.floats,
                r.megabytes,
                r.read_ms,
                r.write_ms,
                opt(r.allreduce_ms, 1),
                opt(r.bus_gbps, 2)
            ));
        }
        t
    }
}
