//! Using a trained encoder: representations of images, linear evaluation and kNN.

mod embed;
mod features;
mod knn;
mod lbfgs;
mod linear;
mod linear_sgd;
mod logistic;
mod whiten;

pub use embed::{embed_npy, find_encoder_prefix, Encoder};
pub use features::{encode_dataset, pixel_features, DatasetEncoder, Features};
pub use knn::{knn_eval, KnnReport};
pub use linear::{linear_eval, LinearEvalConfig, LinearEvalReport, Score, Solver};
