//! k-nearest-neighbour classification on L2-normalised representations: cosine similarities
//! on the device (one matrix product per batch of queries), temperature-weighted votes of the
//! k most similar training images (peers' habit: k 20 or 200, T 0.07 or 0.1).

use std::sync::Arc;

use super::Features;
use crate::gpu::Gpu;
use crate::graph::{Executable, Graph};
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
    let queries = 128.min(test.len());
    // Widths padded to multiples of 4 for the fast matmul kernels; padded bank rows are zero
    // and never considered.
    let (dim, bank_rows) = (
        train.dim.next_multiple_of(4),
        train.len().next_multiple_of(4),
    );
    let pad = |x: Vec<f32>, rows: usize| -> Vec<f32> {
        let mut out = vec![0f32; rows * dim];
        for (i, r) in x.chunks(train.dim).enumerate() {
            out[i * dim..i * dim + train.dim].copy_from_slice(r);
        }
        out
    };
    let mut g = Graph::new();
    let q = g.input("queries", &[queries, dim]);
    let bank = g.input("bank", &[bank_rows, dim]);
    let sims = g.matmul_t(q, bank, false, true);
    let exe = Executable::new(gpu, &g, &[sims])?;
    exe.write(bank, &pad(normalized(train), bank_rows))?;
    let xq = pad(normalized(test), test.len());
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut qb = vec![0f32; queries * dim];
    let mut idx: Vec<usize> = (0..train.len()).collect();
    for start in (0..test.len()).step_by(queries) {
        let rows = queries.min(test.len() - start);
        qb[..rows * dim].copy_from_slice(&xq[start * dim..(start + rows) * dim]);
        let s = exe.run(&[(q, &qb)])?.remove(0);
        for r in 0..rows {
            let row = &s[r * bank_rows..r * bank_rows + train.len()];
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
