//! Kernel choice by measurement: where several kernels compute the same result (the tiled GEMM
//! families), the device times each once on its own adapter and keeps the fastest.
//!
//! Which tile wins depends on the GPU (compute units, workgroup memory, the driver's compiler),
//! so a rule of thumb tuned on one adapter misleads on the next. Like cuDNN's benchmark mode, the
//! first use of a problem times its candidates on scratch buffers and remembers the winner for
//! the device and its siblings. Candidates must produce bit-identical results (the tiled
//! families all accumulate K in the same order), so the choice never changes what a run
//! computes, only how fast. On by default on hardware GPUs, where pipelines compile in
//! milliseconds; off on software adapters, which compile each candidate for seconds and have
//! one choice per problem anyway. `--tune` (`BYOL_TUNE`, `AdapterChoice::tune_kernels`)
//! overrides.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Dispatch, Gpu};
use crate::Result;

/// Seconds of repeated runs per timing sample of a candidate.
const SAMPLE_SECONDS: f64 = 0.005;
/// Timing samples per candidate, of which the median counts.
const SAMPLES: usize = 3;
/// Problems whose scratch operands would take more bytes keep the first candidate.
const MAX_TUNING_BYTES: u64 = 1 << 30;

/// The winners so far, by problem, and the seconds spent timing them; shared by a device and
/// its siblings.
#[derive(Default)]
pub(super) struct Record {
    chosen: HashMap<String, usize>,
    seconds: f64,
}

pub(super) type Choices = Arc<Mutex<Record>>;

impl Gpu {
    /// Whether `fastest` times its candidates (otherwise it takes the first).
    pub fn tunes_kernels(&self) -> bool {
        self.tuning.load(Ordering::Relaxed)
    }

    /// Turns tuning on or off for this device (its siblings keep their setting).
    pub fn set_kernel_tuning(&self, on: bool) {
        self.tuning.store(on, Ordering::Relaxed);
    }

    /// The fastest of `candidates` for `problem` (a name that identifies the work: op, shapes,
    /// parameters). `launch` records a candidate's dispatches on the scratch buffers it is given,
    /// of the byte sizes `scratch_bytes` (the problem's operands). Timed the first time the
    /// problem is seen and remembered after; the first candidate, the rule-of-thumb choice,
    /// when tuning is off, when there is only one, or when the scratch buffers would take more
    /// than `MAX_TUNING_BYTES`.
    pub fn fastest<T: Copy + std::fmt::Debug>(
        &self,
        problem: &str,
        candidates: &[T],
        scratch_bytes: &[u64],
        mut launch: impl FnMut(T, &[wgpu::Buffer]) -> Result<Vec<Dispatch>>,
    ) -> Result<T> {
        assert!(!candidates.is_empty(), "no candidate kernels for {problem}");
        let too_large = scratch_bytes.iter().sum::<u64>() > MAX_TUNING_BYTES;
        if candidates.len() == 1 || !self.tunes_kernels() || too_large {
            return Ok(candidates[0]);
        }
        let key = format!("{problem} among {candidates:?}");
        if let Some(i) = self.choices.lock().unwrap().chosen.get(&key) {
            return Ok(candidates[*i]);
        }
        let started = Instant::now();
        let scratch = scratch_bytes
            .iter()
            .map(|&bytes| self.storage_buffer("tuning scratch", bytes))
            .collect::<Result<Vec<_>>>()?;
        let mut best = (f64::INFINITY, 0);
        for (i, &candidate) in candidates.iter().enumerate() {
            // A candidate past one of the adapter's limits (its grid, say) drops out; the
            // first, which runs when nothing is timed, must launch.
            let dispatches = match launch(candidate, &scratch) {
                Ok(d) => d,
                Err(_) if i > 0 => continue,
                Err(e) => return Err(e),
            };
            let seconds = self.seconds_per_run(&dispatches, SAMPLE_SECONDS, SAMPLES)?;
            if seconds < best.0 {
                best = (seconds, i);
            }
        }
        let mut record = self.choices.lock().unwrap();
        record.chosen.insert(key, best.1);
        record.seconds += started.elapsed().as_secs_f64();
        Ok(candidates[best.1])
    }

    /// How many problems the device has timed candidates for.
    pub fn tuned_problems(&self) -> usize {
        self.choices.lock().unwrap().chosen.len()
    }

    /// The seconds the device and its siblings have spent timing candidates.
    pub fn tuning_seconds(&self) -> f64 {
        self.choices.lock().unwrap().seconds
    }

    /// Seconds per run of `dispatches`: after a first run (which compiles and warms caches),
    /// enough runs per submission to last about `sample_seconds`, and the median of `samples`
    /// such submissions.
    pub fn seconds_per_run(
        &self,
        dispatches: &[Dispatch],
        sample_seconds: f64,
        samples: usize,
    ) -> Result<f64> {
        self.run(dispatches)?;
        let once = {
            let t = Instant::now();
            self.run(dispatches)?;
            t.elapsed().as_secs_f64()
        };
        let reps = ((sample_seconds / once.max(1e-6)) as usize).clamp(1, 1000);
        let batch: Vec<Dispatch> = (0..reps).flat_map(|_| dispatches.iter().cloned()).collect();
        let mut times: Vec<f64> = (0..samples)
            .map(|_| {
                let t = Instant::now();
                self.run(&batch)
                    .map(|()| t.elapsed().as_secs_f64() / reps as f64)
            })
            .collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}
