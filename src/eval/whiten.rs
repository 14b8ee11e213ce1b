//! A change of variables that lets the linear probe's L-BFGS converge in far fewer iterations
//! without moving its optimum. Correlated features make the cross-entropy's curvature
//! lopsided (on Fashion-MNIST features of 64 dimensions the fits of C 1 and 10 ran into the
//! 1,000-iteration cap). With L L^T = S + delta I, S the features' second moment, the fit runs
//! on features L^-1 x (second moment near I) for weights u = L^T w: the scores u . L^-1 x equal
//! w . x, and the penalty |w|^2 = |L^-T u|^2, so the objective is the same function, only seen
//! through other coordinates.

use super::logistic::Rows;

/// Widest features whitened: the rows' transform costs rows x dim^2.
pub const MAX_DIM: usize = 512;

/// Added to the second moment's diagonal (features are standardised, so the diagonal is about
/// 1): keeps L invertible when features are constant or collinear.
const DELTA: f64 = 1e-3;

/// The lower-triangular Cholesky factor L of the rows' second moment plus DELTA I.
pub struct Whitening {
    dim: usize,
    /// Row-major [dim][dim]; zero above the diagonal.
    l: Vec<f64>,
}

impl Whitening {
    /// The factor of `rows`' second moment, or None for features wider than MAX_DIM.
    pub fn of(rows: &Rows) -> Option<Self> {
        let dim = rows.dim;
        if dim > MAX_DIM || rows.labels.is_empty() {
            return None;
        }
        let n = rows.labels.len() as f64;
        let mut s = vec![0.0; dim * dim];
        for x in rows.x.chunks_exact(dim) {
            for (i, &xi) in x.iter().enumerate() {
                s[i * dim..i * dim + i + 1]
                    .iter_mut()
                    .zip(&x[..=i])
                    .for_each(|(a, xj)| *a += xi * xj);
            }
        }
        let mut l = vec![0.0; dim * dim];
        for i in 0..dim {
            for j in 0..=i {
                let mut v = s[i * dim + j] / n + if i == j { DELTA } else { 0.0 };
                v -= (0..j).map(|k| l[i * dim + k] * l[j * dim + k]).sum::<f64>();
                l[i * dim + j] = if i == j {
                    // Positive by DELTA; the guard only matters for NaN features.
                    v.max(DELTA).sqrt()
                } else {
                    v / l[j * dim + j]
                };
            }
        }
        Some(Self { dim, l })
    }

    /// The rows' features as L^-1 x.
    pub fn rows(&self, rows: &Rows) -> Rows {
        let mut x = rows.x.clone();
        for row in x.chunks_exact_mut(self.dim) {
            self.solve_lower(row);
        }
        Rows {
            x,
            labels: rows.labels.clone(),
            dim: self.dim,
        }
    }

    /// v <- L^-1 v.
    pub fn solve_lower(&self, v: &mut [f64]) {
        let d = self.dim;
        for i in 0..d {
            let sum: f64 = (0..i).map(|k| self.l[i * d + k] * v[k]).sum();
            v[i] = (v[i] - sum) / self.l[i * d + i];
        }
    }

    /// v <- L^-T v.
    pub fn solve_upper(&self, v: &mut [f64]) {
        let d = self.dim;
        for i in (0..d).rev() {
            let sum: f64 = (i + 1..d).map(|k| self.l[k * d + i] * v[k]).sum();
            v[i] = (v[i] - sum) / self.l[i * d + i];
        }
    }

    /// L^T v.
    fn times_upper(&self, v: &[f64]) -> Vec<f64> {
        let d = self.dim;
        (0..d)
            .map(|i| (i..d).map(|k| self.l[k * d + i] * v[k]).sum())
            .collect()
    }

    /// A classifier's parameters ([classes][dim] weights, then the biases) into whitened
    /// coordinates: u_k = L^T w_k; the biases stay.
    pub fn weights_to_white(&self, params: &mut [f64], classes: usize) {
        for w in params[..classes * self.dim].chunks_exact_mut(self.dim) {
            let u = self.times_upper(w);
            w.copy_from_slice(&u);
        }
    }

    /// The inverse of `weights_to_white`: w_k = L^-T u_k.
    pub fn weights_from_white(&self, params: &mut [f64], classes: usize) {
        for u in params[..classes * self.dim].chunks_exact_mut(self.dim) {
            self.solve_upper(u);
        }
    }
}
