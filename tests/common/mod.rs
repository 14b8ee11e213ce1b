//! Helpers shared by the integration tests: the adapter (found as the CLI finds it), seeded
//! random data, and comparisons that report the worst element.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use byol_wgpu::gpu::Gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The repository whose files the tests read: this checkout, or the one `BYOL_TEST_REPO`
/// names (tests/self_contained.rs points it at a fresh clone).
pub fn repo() -> PathBuf {
    std::env::var_os("BYOL_TEST_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// One device per test binary, chosen by BYOL_BACKEND / BYOL_ADAPTER like the CLI.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::from_env().unwrap_or_else(|e| panic!("tests need an adapter: {e}")))
        .clone()
}

pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0f32)).collect()
}

/// Asserts |actual - expected| <= atol + rtol |expected| everywhere, naming the worst element.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], atol: f64, rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(a.is_finite(), "{what}: element {i} is {a}");
        let excess = (f64::from(a) - e).abs() - (atol + rtol * e.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{what}: element {i} is {} but the reference is {} (atol {atol}, rtol {rtol})",
        actual[i],
        expected[i]
    );
}
