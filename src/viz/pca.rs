//! Two-dimensional PCA of representations, for the live embedding map.

/// The coordinates of each row of `data` ([n, dim]) on the two leading principal components
/// (power iteration with deflation; signs fixed so each component's largest loading is
/// positive, which keeps the map from flipping between refreshes).
pub fn pca_2d(data: &[f32], dim: usize) -> Vec<[f64; 2]> {
    let n = data.len().checked_div(dim).unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    let mut mean = vec![0f64; dim];
    for row in data.chunks(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v) / n as f64;
        }
    }
    let x: Vec<f64> = data
        .chunks(dim)
        .flat_map(|r| r.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
        .collect();
    let mut components: Vec<Vec<f64>> = Vec::new();
    for k in 0..2 {
        // Start away from any earlier component: a fixed, index-dependent vector.
        let mut v: Vec<f64> = (0..dim)
            .map(|j| 1.0 + ((j * 7 + k * 3) % 11) as f64 / 11.0)
            .collect();
        for _ in 0..100 {
            // v <- X^T X v, made orthogonal to earlier components.
            let xv: Vec<f64> = x
                .chunks(dim)
                .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let mut next = vec![0f64; dim];
            for (r, s) in x.chunks(dim).zip(&xv) {
                for (nj, rj) in next.iter_mut().zip(r) {
                    *nj += rj * s;
                }
            }
            for c in &components {
                let d: f64 = next.iter().zip(c).map(|(a, b)| a * b).sum();
                next.iter_mut().zip(c).for_each(|(a, b)| *a -= d * b);
            }
            let norm = next.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm < 1e-30 {
                break;
            }
            v = next.into_iter().map(|a| a / norm).collect();
        }
        let largest = v
            .iter()
            .copied()
            .fold(0f64, |m, a| if a.abs() > m.abs() { a } else { m });
        if largest < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        components.push(v);
    }
    x.chunks(dim)
        .map(|r| {
            let p = |c: &Vec<f64>| r.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
            [p(&components[0]), p(&components[1])]
        })
        .collect()
}
