//! The one error type of the library: every failure a user can cause or meet names its fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found{filter}. {hint}")]
    NoAdapter { filter: String, hint: String },
    #[error("could not open the device on adapter '{adapter}': {reason}")]
    Device { adapter: String, reason: String },
    #[error("unknown backend '{0}': use one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),
    #[error("shape error in {op}: {msg}")]
    Shape { op: String, msg: String },
    #[error("{what} needs {needed} bytes, but the adapter allows at most {limit} bytes per buffer binding (max_storage_buffer_binding_size); use a smaller batch or model")]
    AdapterLimit {
        what: String,
        needed: u64,
        limit: u64,
    },
    #[error("graph error: {0}")]
    Graph(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Training(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("interrupted at step {step}; checkpoint {}; continue with `byol train --resume {}`", checkpoint.display(), run.display())]
    Interrupted {
        step: u64,
        checkpoint: PathBuf,
        run: PathBuf,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
