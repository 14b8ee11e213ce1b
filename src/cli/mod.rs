//! The subcommands that need more than a few lines.

pub mod eval;
pub mod train;
