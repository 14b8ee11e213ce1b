//! IDX files (MNIST, Fashion-MNIST): big-endian header, then unsigned bytes; plain or gzipped.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// The dimensions and bytes of one IDX file of unsigned bytes.
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The most data one IDX file may claim: far above any IDX dataset published (EMNIST's
/// largest is under 1 GiB), so a corrupt header cannot ask for the machine's memory.
const MAX_DATA_BYTES: usize = 1 << 34;

/// Reads an IDX file of unsigned bytes, plain or gzipped. A gzipped file is decompressed only
/// as far as its header says, so a decompression bomb is refused, not inflated.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let err = |msg: String| Error::File {
        path: path.to_path_buf(),
        msg,
    };
    let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let gz = raw.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(&raw[..]))
    } else {
        Box::new(&raw[..])
    };
    let read_err = |e: std::io::Error| {
        if gz {
            err(format!("not a valid gzip file: {e}"))
        } else {
            err(e.to_string())
        }
    };
    let mut head = [0u8; 4];
    let got = read_up_to(&mut reader, &mut head).map_err(read_err)?;
    if got < 4 || head[0] != 0 || head[1] != 0 {
        return Err(err("not an IDX file (bad magic number)".into()));
    }
    if head[2] != 0x08 {
        return Err(err(format!(
            "IDX element type 0x{:02x} is not unsigned bytes (0x08)",
            head[2]
        )));
    }
    let ndim = head[3] as usize;
    let mut dim_bytes = vec![0u8; 4 * ndim];
    if read_up_to(&mut reader, &mut dim_bytes).map_err(read_err)? < dim_bytes.len() {
        return Err(err("IDX header is truncated".into()));
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_DATA_BYTES)
        .ok_or_else(|| {
            err(format!(
                "IDX dims {dims:?} claim more than the {MAX_DATA_BYTES} bytes of data this reader takes: the header is corrupt"
            ))
        })?;
    // One byte more than claimed tells a file that is too long from one that fits.
    let mut data = Vec::new();
    reader
        .take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() != expected {
        let has = match data.len() > expected {
            true => "more".to_string(),
            false => data.len().to_string(),
        };
        return Err(err(format!(
            "IDX dims {dims:?} need {expected} bytes of data, the file has {has}"
        )));
    }
    Ok(Idx { dims, data })
}

/// Fills as much of `buf` as the reader has; the count read.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
