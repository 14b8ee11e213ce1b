//! Helpers shared by the integration tests: the adapter (found as the CLI finds it), seeded
//! random data, and comparisons that report the worst element.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use byol_wgpu::gpu::Gpu;
use byol_wgpu::train::{metrics, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The repository whose files the tests read: this checkout, or the one `BYOL_TEST_REPO`
/// names (tests/self_contained.rs points it at a fresh clone).
pub fn repo() -> PathBuf {
    std::env::var_os("BYOL_TEST_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// This process alone: the group of every in-process training test.
pub fn alone() -> Arc<byol_wgpu::parallel::Group> {
    Arc::new(byol_wgpu::parallel::Group::alone())
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

/// The Fashion-MNIST sample the repository ships.
pub fn sample() -> PathBuf {
    repo().join("assets/fashion-mnist-sample")
}

/// The tiny preset on 160 sample images, batch 16 in `accumulate` micro-batches, 2 epochs.
pub fn tiny(accumulate: usize) -> TrainConfig {
    let mut c = TrainConfig::preset("tiny").unwrap();
    c.data = Some(sample());
    c.subset = Some(160);
    c.batch = 16;
    c.accumulate = accumulate;
    c.epochs = 2;
    c.warmup_epochs = 0.5;
    c
}

/// A new run of `config` into `out`, stopped after `stop_after` steps.
pub fn train(config: &TrainConfig, out: &Path, stop_after: u64) {
    let mut config = config.clone();
    config.stop_after = Some(stop_after);
    let mut t = Trainer::new(&alone(), &gpu(), config, out).unwrap();
    t.run(&mut |_| {}).unwrap();
}

/// The timing-free part of every step's metrics of the run in `run`.
pub fn deterministic(run: &Path) -> Vec<[u64; 8]> {
    metrics::read(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|m| m.deterministic_part())
        .collect()
}
