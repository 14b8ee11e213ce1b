//! Kernel microbenchmarks: throughput against the adapter's own measured FMA peak.
//!
//! Timing is wall-clock around a submission of `reps` identical dispatches and the wait for it,
//! repeated; the figure is the median sample. Submission overhead is amortised by sizing each
//! sample to about a quarter of a second.

use std::time::Instant;

use serde::Serialize;

use crate::gpu::{Dispatch, Gpu, KernelKey};
use crate::ops::{MatmulKernel, Params};
use crate::Result;

const SAMPLES: usize = 5;
const TARGET_SAMPLE_SECONDS: f64 = 0.25;

/// Median seconds per dispatch of `dispatch`, after one warm-up run.
pub fn time_dispatch(gpu: &Gpu, dispatch: &Dispatch) -> Result<f64> {
    let once = {
        gpu.run(std::slice::from_ref(dispatch))?;
        let t = Instant::now();
        gpu.run(std::slice::from_ref(dispatch))?;
        t.elapsed().as_secs_f64()
    };
    let reps = ((TARGET_SAMPLE_SECONDS / once.max(1e-6)) as usize).clamp(1, 1000);
    let batch = vec![dispatch.clone(); reps];
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        gpu.run(&batch)?;
        samples.push(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(median(&mut samples))
}

pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// GFLOP/s of an FMA-bound kernel: the adapter's arithmetic roof.
pub fn fma_peak_gflops(gpu: &Gpu) -> Result<f64> {
    const ITERS: usize = 4096;
    const FLOPS_PER_ITER: f64 = 64.0;
    // Enough invocations to fill a large GPU; software adapters need far fewer.
    let groups: u32 = if gpu.is_cpu() { 64 } else { 4096 };
    let invocations = groups as usize * 256;
    let out = gpu.storage_buffer("fma peak output", (invocations * 4) as u64)?;
    let params = Params::default().u(ITERS).padded(4);
    let d = gpu.dispatch(
        &KernelKey::new("fma_peak", "main"),
        &params,
        &[(1, &out)],
        [groups, 1, 1],
    )?;
    let seconds = time_dispatch(gpu, &d)?;
    Ok(invocations as f64 * ITERS as f64 * FLOPS_PER_ITER / seconds / 1e9)
}

#[derive(Debug, Clone, Serialize)]
pub struct MatmulResult {
    pub kernel: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatmulReport {
    pub adapter: String,
    pub backend: String,
    pub peak_gflops: f64,
    pub results: Vec<MatmulResult>,
}

/// The shapes `byol bench matmul` measures: squares, then the BYOL heads' layers
/// (ResNet-50 at batch 512: 2048 -> 4096 -> 256; ResNet-18 at batch 256: 512 -> 4096).
pub fn matmul_shapes() -> Vec<(usize, usize, usize)> {
    vec![
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (512, 4096, 2048),
        (512, 256, 4096),
        (256, 4096, 512),
    ]
}

/// Deterministic values in [-1, 1) that do not overflow sums.
fn filler(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 2000) as f32) / 1000.0 - 1.0)
        .collect()
}

/// GFLOP/s of one product with one kernel variant and transposition.
pub fn bench_matmul(
    gpu: &Gpu,
    kernel: MatmulKernel,
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
) -> Result<MatmulResult> {
    let a = gpu.storage_buffer("bench a", (m * k * 4) as u64)?;
    let b = gpu.storage_buffer("bench b", (k * n * 4) as u64)?;
    let c = gpu.storage_buffer("bench c", (m * n * 4) as u64)?;
    gpu.write_f32(&a, &filler(m * k, 1));
    gpu.write_f32(&b, &filler(k * n, 2));
    let d = kernel.dispatch(gpu, (&a, &b, &c), (m, n, k), trans_a, trans_b)?;
    let seconds = time_dispatch(gpu, &d)?;
    let suffix = match (trans_a, trans_b) {
        (false, false) => "",
        (true, false) => " A^T",
        (false, true) => " B^T",
        (true, true) => " A^T B^T",
    };
    Ok(MatmulResult {
        kernel: format!("{}{suffix}", kernel.name()),
        m,
        n,
        k,
        gflops: 2.0 * (m * n * k) as f64 / seconds / 1e9,
    })
}

/// The whole `byol bench matmul` report: the peak, then every shape with every kernel variant
/// that supports it, then the transposed forms backward uses at 1024 with the adapter's choice.
pub fn matmul_report(
    gpu: &Gpu,
    shapes: &[(usize, usize, usize)],
    mut progress: impl FnMut(&MatmulResult),
) -> Result<MatmulReport> {
    let peak_gflops = fma_peak_gflops(gpu)?;
    let mut results = Vec::new();
    let mut record = |r: MatmulResult, results: &mut Vec<MatmulResult>| {
        progress(&r);
        results.push(r);
    };
    for &(m, n, k) in shapes {
        for kernel in [
            MatmulKernel::Subgroup,
            MatmulKernel::Vec4,
            MatmulKernel::Tiled,
        ] {
            if kernel.available(gpu) && kernel.supports(m, n, k, false) {
                record(
                    bench_matmul(gpu, kernel, (m, n, k), false, false)?,
                    &mut results,
                );
            }
        }
    }
    let s = 1024;
    for (ta, tb) in [(true, false), (false, true)] {
        let kernel = MatmulKernel::choose(gpu, s, s, s, ta);
        record(bench_matmul(gpu, kernel, (s, s, s), ta, tb)?, &mut results);
    }
    Ok(MatmulReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        peak_gflops,
        results,
    })
}

impl MatmulReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({})\nFMA peak: {:.1} GFLOP/s\n\n| kernel | m | n | k | GFLOP/s | % of peak |\n|---|---:|---:|---:|---:|---:|\n",
            self.adapter, self.backend, self.peak_gflops
        );
        for r in &self.results {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.0}% |\n",
                r.kernel,
                r.m,
                r.n,
                r.k,
                r.gflops,
                100.0 * r.gflops / self.peak_gflops
            ));
        }
        s
    }
}
