//! CIFAR-10 and CIFAR-100 binary batches: per record a label byte (CIFAR-100: coarse, then fine)
//! and 3072 bytes of 32x32 planar RGB.

use std::path::Path;

use crate::{Error, Result};

pub const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;

/// Reads one batch file; `label_bytes` is 1 for CIFAR-10 and 2 for CIFAR-100 (the fine label is
/// kept). Returns interleaved RGB pixels and labels.
pub fn read_batch(path: &Path, label_bytes: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(Error::File {
            path: path.to_path_buf(),
            msg: format!(
                "{} bytes is not a whole number of {record}-byte CIFAR records",
                bytes.len()
            ),
        });
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for r in bytes.chunks_exact(record) {
        labels.push(u32::from(r[label_bytes - 1]));
        let planes = &r[label_bytes..];
        for p in 0..SIDE * SIDE {
            for c in 0..3 {
                pixels.push(planes[c * SIDE * SIDE + p]);
            }
        }
    }
    Ok((pixels, labels))
}
