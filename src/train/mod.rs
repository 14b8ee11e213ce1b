//! Training runs: config and presets, the loop, checkpoints and metrics, and what a run shows
//! of its representations.

pub mod checkpoint;
mod config;
pub mod metrics;
mod replicas;
mod trainer;
mod verdict;

pub use config::{TrainConfig, PRESETS};
pub use metrics::StepMetrics;
pub use trainer::{open_dataset, view_side, Control, Event, RunInfo, Trainer};
pub use verdict::{verdict, ProbeSet, Verdict};
