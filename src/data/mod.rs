//! Data on disk and its way to the device: datasets (IDX, CIFAR, image folders), the loader
//! that decodes and shuffles them, and NumPy arrays.

pub mod cifar;
mod dataset;
pub mod idx;
mod image;
mod loader;
pub mod npy;

pub use self::image::Image;
pub use dataset::{
    default_dataset_path, first_readable, open, Dataset, Folder, InMemory, Normalization, Split,
    Subset, ViewSpec,
};
pub use loader::{Batch, EpochReader, Loader, Skipped};
