//! The embedding map's PCA against a known answer.

use byol_wgpu::viz::pca_2d;

#[test]
fn pca_finds_the_two_directions_of_largest_variance() {
    // 200 points in 6-d: large variance along axis 2, medium along axis 4, a little elsewhere.
    let mut data = Vec::new();
    let mut truth = Vec::new();
    for i in 0..200 {
        let a = ((i * 37) % 101) as f32 / 101.0 * 6.0 - 3.0;
        let b = ((i * 53) % 97) as f32 / 97.0 * 2.0 - 1.0;
        let noise = |k: usize| (((i * 13 + k * 7) % 17) as f32 / 17.0 - 0.5) * 0.01;
        data.extend([noise(0), noise(1), a + 5.0, noise(3), b - 2.0, noise(5)]);
        truth.push((a, b));
    }
    let p = pca_2d(&data, 6);
    let corr = |x: &[f64], y: &[f64]| {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    };
    let first: Vec<f64> = p.iter().map(|q| q[0]).collect();
    let second: Vec<f64> = p.iter().map(|q| q[1]).collect();
    let a: Vec<f64> = truth.iter().map(|t| f64::from(t.0)).collect();
    let b: Vec<f64> = truth.iter().map(|t| f64::from(t.1)).collect();
    // Up to sign (and the small correlation of this sample's a and b).
    assert!(corr(&first, &a).abs() > 0.99, "{}", corr(&first, &a));
    assert!(corr(&second, &b).abs() > 0.95, "{}", corr(&second, &b));
    assert!(
        corr(&first, &second).abs() < 1e-6,
        "the components are uncorrelated"
    );
    assert!(pca_2d(&[], 3).is_empty());
}
