//! NumPy .npy files of float32 (float64 is read and converted), C order.

use std::path::Path;

use crate::nn::write_atomically;
use crate::{Error, Result};

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        msg: format!("not a float32 .npy array: {msg}"),
    }
}

/// The value of `key` in the header's Python dict literal.
fn header_field<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

/// Reads an array: its shape and its values.
pub fn read(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "no NumPy magic"));
    }
    let (header_len, offset) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("format version {v}"))),
    };
    let header = bytes
        .get(offset..offset + header_len)
        .ok_or_else(|| bad(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(path, "header is not text"))?;
    let descr = header_field(header, "descr").ok_or_else(|| bad(path, "no descr"))?;
    if header_field(header, "fortran_order") != Some("False") {
        return Err(bad(path, "only C-order arrays are read"));
    }
    let shape_text = header_field(header, "shape").ok_or_else(|| bad(path, "no shape"))?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| bad(path, format!("shape {shape_text}")))
        })
        .collect::<Result<_>>()?;
    let body = &bytes[offset + header_len..];
    // A shape claiming more values than the file could hold is refused before any allocation.
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= body.len())
        .ok_or_else(|| {
            bad(
                path,
                format!("{} bytes of data for shape {shape:?}", body.len()),
            )
        })?;
    let data: Vec<f32> = match descr.trim_matches('\'') {
        "<f4" | "|f4" if body.len() >= count * 4 => body[..count * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "<f8" if body.len() >= count * 8 => body[..count * 8]
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        "<f4" | "|f4" | "<f8" => {
            return Err(bad(
                path,
                format!("{} bytes of data for shape {shape:?}", body.len()),
            ))
        }
        other => return Err(bad(path, format!("dtype {other}"))),
    };
    Ok((shape, data))
}

/// Writes a float32 array (format 1.0), atomically.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "data does not fill the shape"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic, version, length and header together are a multiple of 64 bytes, ending in '\n'.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(
        &u16::try_from(header.len())
            .expect("short header")
            .to_le_bytes(),
    );
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(bytemuck::cast_slice(data));
    write_atomically(path, &bytes)
}
