//! Layers built into a graph with torchvision's parameter names: Conv2d, BatchNorm, Linear,
//! ResNet v1 and the BYOL MLP heads; weights in safetensors files.

mod init;
mod layers;
mod resnet;
mod weights;

pub use init::{initial_values, random_encoder};
pub use layers::{Layers, Mode, NamedParam, ParamRole};
pub use resnet::{Block, ResNetConfig, Stem};
pub use weights::{
    load_safetensors, parse_safetensors, safetensors_bytes, save_safetensors, upload,
    write_atomically, Weights,
};
