//! Using a trained encoder: representations of images (linear evaluation and kNN follow).

mod embed;

pub use embed::{embed_npy, find_encoder_prefix, Encoder};
