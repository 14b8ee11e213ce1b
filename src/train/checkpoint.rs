//! Checkpoints: one directory per save (`checkpoints/step-00000100/`) holding every tensor of
//! the step (online, target, predictor, batch-norm statistics, optimiser state) in safetensors
//! and the run's state in JSON. A checkpoint is written into a hidden directory, synced, and
//! renamed into place, so a crash leaves only whole checkpoints; the newest two are kept.
//! state.json records the CRC-32 of the tensors, so a checkpoint damaged later (a bad disk, a
//! partial copy) is recognised, and resuming a run falls back to its newest whole checkpoint.

use std::path::{Path, PathBuf};

use super::TrainConfig;
use crate::data::ViewSpec;
use crate::nn::{parse_safetensors, safetensors_bytes, write_atomically, Weights};
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

/// The checkpoint directories of a run (`step-*`, whole or damaged), oldest first.
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
            p.is_dir().then_some((step, p))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// What state.json holds: the run's state and the CRC-32 of the tensors written beside it.
#[derive(serde::Serialize)]
struct Stored<'a> {
    #[serde(flatten)]
    state: &'a TrainState,
    tensors_crc32: u32,
}

const CRC_KEY: &str = "tensors_crc32";

/// Writes a checkpoint of `state` and `tensors` under `run`, then drops all but the newest two.
/// A write that fails (a full or read-only disk) leaves the earlier checkpoints as they were.
pub fn save(run: &Path, state: &TrainState, tensors: &Weights) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    let done = path_of(run, state.step);
    let name = done
        .file_name()
        .expect("a step directory")
        .to_string_lossy();
    let partial = dir.join(format!(".partial-{name}"));
    write_partial(&partial, state, tensors).map_err(|e| {
        let _ = std::fs::remove_dir_all(&partial);
        file_error(
            &done,
            format!("checkpoint not written ({e}); the earlier checkpoints are intact"),
        )
    })?;
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

/// Where the checkpoint of `step` of the run in `run` is written.
pub fn path_of(run: &Path, step: u64) -> PathBuf {
    checkpoints_dir(run).join(format!("step-{step:08}"))
}

fn write_partial(partial: &Path, state: &TrainState, tensors: &Weights) -> Result<()> {
    let _ = std::fs::remove_dir_all(partial);
    std::fs::create_dir_all(partial).map_err(|e| file_error(partial, e))?;
    let tensors_path = partial.join(TENSORS);
    let bytes = safetensors_bytes(&tensors_path, tensors)?;
    write_atomically(&tensors_path, &bytes)?;
    let stored = Stored {
        state,
        tensors_crc32: crc32fast::hash(&bytes),
    };
    let json = serde_json::to_vec_pretty(&stored).expect("state serialises");
    write_atomically(&partial.join(STATE), &json)
}

/// A checkpoint read whole.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: TrainState,
    pub tensors: Weights,
    /// Newer checkpoints of the run that could not be read, newest first, with why.
    pub passed_over: Vec<(PathBuf, Error)>,
}

impl Loaded {
    /// One line per damaged checkpoint passed over, naming the one read instead.
    pub fn fallback_lines(&self) -> Vec<String> {
        self.passed_over
            .iter()
            .map(|(dir, why)| {
                format!(
                    "checkpoint {} is damaged ({why}); using {} instead",
                    dir.display(),
                    self.dir.display()
                )
            })
            .collect()
    }
}

/// Reads the checkpoint at `path`: that checkpoint directory, or for a run directory its
/// newest checkpoint that reads whole (a damaged newer one is passed over and reported).
pub fn load(path: &Path) -> Result<Loaded> {
    let is_checkpoint = path.join(STATE).exists()
        || path.join(TENSORS).exists()
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("step-"));
    if is_checkpoint {
        let (state, tensors) = read(path)?;
        return Ok(Loaded {
            dir: path.to_path_buf(),
            state,
            tensors,
            passed_over: Vec::new(),
        });
    }
    if !path.exists() {
        return Err(file_error(path, "no such run or checkpoint directory"));
    }
    let mut passed_over = Vec::new();
    for dir in list(path).into_iter().rev() {
        match read(&dir) {
            Ok((state, tensors)) => {
                return Ok(Loaded {
                    dir,
                    state,
                    tensors,
                    passed_over,
                })
            }
            Err(why) => passed_over.push((dir, why)),
        }
    }
    if passed_over.is_empty() {
        return Err(file_error(
            path,
            "no checkpoint here (expected checkpoints/step-*/ with state.json and tensors.safetensors)",
        ));
    }
    let whys: Vec<String> = passed_over.iter().map(|(_, e)| e.to_string()).collect();
    Err(file_error(
        path,
        format!("every checkpoint is damaged: {}", whys.join("; ")),
    ))
}

/// Reads one checkpoint directory, checking its tensors against the checksum in state.json.
fn read(dir: &Path) -> Result<(TrainState, Weights)> {
    let state_path = dir.join(STATE);
    let tensors_path = dir.join(TENSORS);
    let text = std::fs::read(&state_path).map_err(|e| file_error(&state_path, e))?;
    let damaged = |e: &dyn std::fmt::Display| {
        file_error(
            &state_path,
            format!("not a byol-wgpu checkpoint state ({e}); the checkpoint is damaged or from another program"),
        )
    };
    let mut json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| damaged(&e))?;
    let recorded = json.remove(CRC_KEY);
    let state: TrainState =
        serde_json::from_value(serde_json::Value::Object(json)).map_err(|e| damaged(&e))?;
    if state.format != FORMAT {
        return Err(file_error(
            &state_path,
            format!(
                "checkpoint format {} is not {FORMAT}, the one this build reads",
                state.format
            ),
        ));
    }
    let bytes = std::fs::read(&tensors_path).map_err(|e| file_error(&tensors_path, e))?;
    // Checkpoints written before checksums have none: their tensors are checked by parsing.
    if let Some(recorded) = recorded {
        let recorded = recorded
            .as_u64()
            .ok_or_else(|| damaged(&"a checksum that is not a number"))?;
        let actual = crc32fast::hash(&bytes);
        if u64::from(actual) != recorded {
            return Err(file_error(
                &tensors_path,
                format!(
                    "CRC-32 {actual:08x} does not match the {recorded:08x} recorded in state.json"
                ),
            ));
        }
    }
    let tensors = parse_safetensors(&tensors_path, &bytes)?;
    Ok((state, tensors))
}
