//! Named f32 tensors in safetensors files, read whole and written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::{Error, Result};

/// Tensors by name, with the file's metadata.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
}

impl Weights {
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| s.as_slice())
    }

    pub fn data(&self, name: &str) -> Option<&[f32]> {
        self.tensors.get(name).map(|(_, d)| d.as_slice())
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn insert(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        self.tensors
            .insert(name.to_string(), (shape.to_vec(), data));
    }

    /// The tensor `name`, or an error naming the file and the tensor.
    pub fn require(&self, name: &str) -> Result<(&[usize], &[f32])> {
        self.tensors
            .get(name)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
            .ok_or_else(|| Error::File {
                path: self.path.clone(),
                msg: format!("no tensor '{name}'"),
            })
    }
}

fn file_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Reads every tensor of a safetensors file as f32 (f16, bf16 and f64 are converted).
pub fn load_safetensors(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    parse_safetensors(path, &bytes)
}

/// The tensors of safetensors `bytes` read from `path` (named in errors), as f32.
pub fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<Weights> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
    let mut weights = Weights {
        path: path.to_path_buf(),
        metadata: header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..Default::default()
    };
    for (name, view) in file.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            Dtype::I64 if name.ends_with("num_batches_tracked") => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(file_error(
                    path,
                    format!(
                        "tensor '{name}' has dtype {other:?}; only floating-point tensors are read"
                    ),
                ))
            }
        };
        weights.insert(&name, view.shape(), data);
    }
    Ok(weights)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = (h >> 10) & 0x1f;
    let mant = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => {
            // Subnormal: renormalise.
            let shift = mant.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((mant << shift) & 0x3ff) << 13
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        e => sign | ((u32::from(e) + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// Writes `weights` as f32 safetensors: to a temporary file beside `path`, synced, then renamed
/// over it, so a crash leaves either the old file or the new one.
pub fn save_safetensors(path: &Path, weights: &Weights) -> Result<()> {
    write_atomically(path, &safetensors_bytes(path, weights)?)
}

/// `weights` as the bytes of an f32 safetensors file (`path` names it in errors).
pub fn safetensors_bytes(path: &Path, weights: &Weights) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .tensors
        .iter()
        .map(|(name, (shape, data))| {
            (
                name.clone(),
                bytemuck::cast_slice::<f32, u8>(data).to_vec(),
                shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(name, b, shape)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| file_error(path, e))?,
            ))
        })
        .collect::<Result<_>>()?;
    let metadata =
        (!weights.metadata.is_empty()).then(|| weights.metadata.clone().into_iter().collect());
    safetensors::serialize(views, metadata).map_err(|e| file_error(path, e))
}

/// Temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| file_error(path, e))
}

/// Uploads every parameter in `params` from `weights`, where it is named `prefix` + its name.
pub fn upload(
    exe: &crate::graph::Executable,
    params: &[super::NamedParam],
    weights: &Weights,
    prefix: &str,
) -> Result<()> {
    for p in params {
        let name = format!("{prefix}{}", p.name);
        let (shape, data) = weights.require(&name)?;
        if shape != p.shape.as_slice() {
            return Err(Error::File {
                path: weights.path.clone(),
                msg: format!(
                    "'{name}' has shape {shape:?}, the model needs {:?}",
                    p.shape
                ),
            });
        }
        exe.write(p.id, data)?;
    }
    Ok(())
}
