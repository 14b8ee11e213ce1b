//! Data on disk: NumPy arrays (datasets, loaders and augmentations follow).

pub mod npy;
