//! byol-wgpu: BYOL self-supervised training where every computation is a WGSL compute shader
//! run through wgpu. See DESIGN.md for the layering: `graph` uses `ops` and `gpu`; nothing below
//! knows what is above it.

pub mod augment;
pub mod bench;
pub mod byol;
pub mod data;
pub mod demo;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod graph;
#[cfg(feature = "gui")]
pub mod gui;
pub mod live;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod train;
pub mod viz;

pub use error::{Error, Result};
