//! Checkpoints: one directory per save (`checkpoints/step-00000100/`) holding every tensor of
//! the step (online, target, predictor, batch-norm statistics, optimiser state) in safetensors
//! and the run's state in JSON. A checkpoint is written into a hidden directory, synced, and
//! renamed into place, so a crash leaves only whole checkpoints; the newest two are kept.

use std::path::{Path, PathBuf};

use super::TrainConfig;
use crate::data::ViewSpec;
use crate::nn::{load_safetensors, save_safetensors, write_atomically, Weights};
use crate::{Error, Result};

pub const FORMAT: u32 = 1;
const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";
const KEEP: usize = 2;

/// Where a run stands: enough to continue it exactly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    pub format: u32,
    /// Optimiser steps done.
    pub step: u64,
    /// The loader's epoch and position in that epoch's order. The order and every
    /// augmentation draw derive from the seed, the epoch and the step, so these are the whole
    /// RNG state.
    pub epoch: u64,
    pub position: usize,
    /// Images that could not be read, over the run.
    pub skipped: u64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// How images were turned into network inputs.
    pub views: ViewSpec,
    pub config: TrainConfig,
}

fn file_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Complete checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(checkpoints_dir(run))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let step = p
                .file_name()?
                .to_str()?
                .strip_prefix("step-")?
                .parse()
                .ok()?;
            (p.join(TENSORS).is_file() && p.join(STATE).is_file()).then_some((step, p))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Writes a checkpoint of `state` and `tensors` under `run`, then drops all but the newest two.
pub fn save(run: &Path, state: &TrainState, tensors: &Weights) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
    let name = format!("step-{:08}", state.step);
    let partial = dir.join(format!(".partial-{name}"));
    let done = dir.join(&name);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir(&partial).map_err(|e| file_error(&partial, e))?;
    save_safetensors(&partial.join(TENSORS), tensors)?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    write_atomically(&partial.join(STATE), &json)?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(|e| file_error(&done, e))?;
    }
    std::fs::rename(&partial, &done).map_err(|e| file_error(&done, e))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let all = list(run);
    for old in &all[..all.len().saturating_sub(KEEP)] {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(done)
}

/// The checkpoint at `path`: a checkpoint directory, or a run directory (its newest one).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(STATE).is_file() && path.join(TENSORS).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(file_error(path, "no such run or checkpoint directory"));
    }
    list(path).pop().ok_or_else(|| {
        file_error(
            path,
            "no checkpoint here (expected checkpoints/step-*/ with state.json and tensors.safetensors)",
        )
    })
}

/// Reads a checkpoint's state and tensors.
pub fn load(path: &Path) -> Result<(TrainState, Weights)> {
    let dir = resolve(path)?;
    let state_path = dir.join(STATE);
    let text = std::fs::read(&state_path).map_err(|e| file_error(&state_path, e))?;
    let state: TrainState = serde_json::from_slice(&text).map_err(|e| {
        file_error(
            &state_path,
            format!("not a byol-wgpu checkpoint state ({e}); the checkpoint is damaged or from another program"),
        )
    })?;
    if state.format != FORMAT {
        return Err(file_error(
            &state_path,
            format!(
                "checkpoint format {} is not {FORMAT}, the one this build reads",
                state.format
            ),
        ));
    }
    let tensors = load_safetensors(&dir.join(TENSORS))?;
    Ok((state, tensors))
}
