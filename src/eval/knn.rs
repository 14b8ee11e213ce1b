//! k-nearest-neighbour classification on L2-normalised representations: cosine similarities
//! on the device (one matrix product per batch of queries), temperature-weighted votes of the
//! k most similar training images (peers' habit: k 20 or 200, T 0.07 or 0.1).

use std::sync::Arc;

use super::Features;
use crate::gpu::Gpu;
use crate::graph::{Executable, Graph, TensorId};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KnnReport {
    pub k: usize,
    pub temperature: f64,
    pub train_images: usize,
    pub test_images: usize,
    pub top1: f64,
    pub top5: f64,
}

fn normalized(f: &Features) -> Vec<f32> {
    f.data
        .chunks(f.dim)
        .flat_map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(move |v| v / n)
        })
        .collect()
}

/// Classifies every test representation by its `k` most similar training ones.
pub fn knn_eval(
    gpu: &Arc<Gpu>,
    train: &Features,
    test: &Features,
    k: usize,
    temperature: f64,
) -> Result<KnnReport> {
    let train_labels = train.require_labels("kNN evaluation")?;
    let test_labels = test.require_labels("kNN evaluation")?;
    if train.dim != test.dim || train.is_empty() || test.is_empty() || k == 0 || temperature <= 0.0
    {
        return Err(Error::Config(
            "kNN needs non-empty train and test features of one width, k >= 1 and T > 0".into(),
        ));
    }
    let classes = train_labels.iter().max().map_or(0, |&m| m as usize + 1);
    let k = k.min(train.len());
    // Widths padded to multiples of 4 for the fast matmul kernels; padded bank rows are zero
    // and never considered. The bank is cut into slices whose rows, and whose similarities to
    // a batch of queries, each fit one buffer binding.
    let dim = train.dim.next_multiple_of(4);
    let binding_floats = (gpu.max_binding_bytes() / 4) as usize;
    let queries = 128.min(test.len()).min(binding_floats / dim).max(1);
    let slice_rows = (binding_floats / dim.max(queries) / 4 * 4)
        .min(train.len().next_multiple_of(4))
        .max(4);
    let pad = |x: &[f32], rows: usize| -> Vec<f32> {
        let mut out = vec![0f32; rows * dim];
        for (i, r) in x.chunks(train.dim).enumerate() {
            out[i * dim..i * dim + train.dim].copy_from_slice(r);
        }
        out
    };
    let bank = normalized(train);
    let slices = bank
        .chunks(slice_rows * train.dim)
        .map(|rows| BankSlice::new(gpu, &pad(rows, slice_rows), queries, slice_rows, dim))
        .collect::<Result<Vec<_>>>()?;
    let xq = pad(&normalized(test), test.len());
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut qb = vec![0f32; queries * dim];
    let mut idx: Vec<usize> = (0..train.len()).collect();
    let mut row = vec![0f32; train.len()];
    for start in (0..test.len()).step_by(queries) {
        let rows = queries.min(test.len() - start);
        qb[..rows * dim].copy_from_slice(&xq[start * dim..(start + rows) * dim]);
        let sims = slices
            .iter()
            .map(|s| s.similarities(&qb))
            .collect::<Result<Vec<_>>>()?;
        for r in 0..rows {
            for (j, s) in sims.iter().enumerate() {
                let first = j * slice_rows;
                let count = slice_rows.min(train.len() - first);
                row[first..first + count]
                    .copy_from_slice(&s[r * slice_rows..r * slice_rows + count]);
            }
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0f64; classes];
            for &i in &idx[..k] {
                votes[train_labels[i] as usize] += (f64::from(row[i]) / temperature).exp();
            }
            let truth = test_labels[start + r] as usize;
            let score = votes.get(truth).copied().unwrap_or(0.0);
            let above = votes.iter().filter(|&&v| v > score).count();
            top1 += usize::from(above == 0 && score > 0.0);
            top5 += usize::from(above < 5 && score > 0.0);
        }
    }
    let n = test.len() as f64;
    Ok(KnnReport {
        k,
        temperature,
        train_images: train.len(),
        test_images: test.len(),
        top1: 100.0 * top1 as f64 / n,
        top5: 100.0 * top5 as f64 / n,
    })
}

/// A slice of the training bank on the device, with the product that scores queries against it.
struct BankSlice {
    exe: Executable,
    queries: TensorId,
}

impl BankSlice {
    fn new(
        gpu: &Arc<Gpu>,
        rows: &[f32],
        queries: usize,
        bank_rows: usize,
        dim: usize,
    ) -> Result<Self> {
        let mut g = Graph::new();
        let q = g.input("queries", &[queries, dim]);
        let bank = g.input("bank", &[bank_rows, dim]);
        let sims = g.matmul_t(q, bank, false, true);
        let exe = Executable::new(gpu, &g, &[sims])?;
        exe.write(bank, rows)?;
        Ok(Self { exe, queries: q })
    }

    /// Cosine similarities [queries, bank rows] of the (normalised) `queries`.
    fn similarities(&self, queries: &[f32]) -> Result<Vec<f32>> {
        Ok(self.exe.run(&[(self.queries, queries)])?.remove(0))
    }
}
