//! Training runs: config and presets, the loop, checkpoints and metrics.

pub mod checkpoint;
mod config;
pub mod metrics;
mod trainer;

pub use config::{TrainConfig, PRESETS};
pub use metrics::StepMetrics;
pub use trainer::{open_dataset, view_side, Control, Event, RunInfo, Trainer};
