//! What a training step reports: one JSON line per optimiser step in DIR/metrics.jsonl.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// Optimiser steps done, this one included.
    pub step: u64,
    pub epoch: u64,
    /// The BYOL loss, averaged over the step's micro-batches.
    pub loss: f64,
    pub lr: f64,
    pub tau: f64,
    /// Mean per-dimension std of the L2-normalised online projections: about 1/sqrt(d)
    /// when healthy, near 0 when collapsed.
    pub collapse_std: f64,
    /// L2 norms over all trainable online parameters and over their gradients.
    pub weight_norm: f64,
    pub grad_norm: f64,
    /// Top-1 (%) of the online linear probe (on the online encoder's representations of the
    /// clean images) on this step's training batch, before its update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_accuracy: Option<f64>,
    pub images_per_s: f64,
    pub elapsed_s: f64,
    /// In a data-parallel run: seconds this step spent making the replicas equal (gradients
    /// read off the device, summed over the ranks, written back), waits for slower ranks
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_s: Option<f64>,
}

impl StepMetrics {
    /// The fields that do not depend on timing: equal for runs that train identically.
    pub fn deterministic_part(&self) -> [u64; 8] {
        [
            self.step,
            self.epoch,
            self.loss.to_bits(),
            self.lr.to_bits(),
            self.tau.to_bits(),
            self.collapse_std.to_bits(),
            self.weight_norm.to_bits(),
            self.grad_norm.to_bits(),
        ]
    }
}

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

impl MetricsLog {
    /// Opens DIR/metrics.jsonl for appending after dropping any lines past `step` (written by a
    /// run that was killed after its last checkpoint).
    pub fn open(run: &Path, step: u64) -> Result<Self> {
        let path = run.join("metrics.jsonl");
        // A killed run may have left a half-written last line: keep the lines that parse, as
        // they were written (re-serialising a parsed float can change its last digit).
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut text = String::new();
        for line in old.lines() {
            if serde_json::from_str::<StepMetrics>(line).is_ok_and(|m| m.step <= step) {
                text.push_str(line);
                text.push('\n');
            }
        }
        crate::nn::write_atomically(&path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| file_error(&path, e))?;
        Ok(Self { path, file })
    }

    pub fn append(&mut self, m: &StepMetrics) -> Result<()> {
        let line = serde_json::to_string(m).expect("metrics serialise");
        writeln!(self.file, "{line}").map_err(|e| file_error(&self.path, e))
    }
}

/// Every step's metrics in a run's metrics.jsonl (none if it does not exist yet).
pub fn read(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| file_error(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
