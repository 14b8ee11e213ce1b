//! Evaluation: the linear probe and kNN on features with known answers, dataset features
//! against the plain encoder, and the eval, export and embed commands.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use byol_wgpu::data::{self, Split, ViewSpec};
use byol_wgpu::eval::{
    encode_dataset, knn_eval, linear_eval, Encoder, Features, LinearEvalConfig, Solver,
};
use byol_wgpu::gpu::AdapterChoice;
use byol_wgpu::nn::{load_safetensors, random_encoder, ResNetConfig, Stem, Weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Points around `classes` random centres in `dim` dimensions.
fn clusters(n: usize, dim: usize, classes: usize, spread: f32, seed: u64) -> Features {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = i % classes;
        data.extend(
            centres[c]
                .iter()
                .map(|v| v + spread * rng.random_range(-1.0..1.0f32)),
        );
        labels.push(Some(c as u32));
    }
    Features { data, dim, labels }
}

#[test]
fn the_linear_probe_separates_clusters_and_not_noise_with_either_solver() {
    let gpu = common::gpu();
    for solver in [Solver::Lbfgs, Solver::Sgd] {
        let cfg = LinearEvalConfig {
            solver,
            epochs: 30,
            batch: 128,
            ..Default::default()
        };
        let (train, test) = (clusters(600, 30, 5, 0.8, 1), clusters(300, 30, 5, 0.8, 2));
        let r = linear_eval(&gpu, &train, &test, &cfg).unwrap();
        assert!(r.top1 > 95.0 && r.top5 == 100.0, "{r:?}");
        let grid = if solver == Solver::Lbfgs {
            &cfg.cs
        } else {
            &cfg.lrs
        };
        assert_eq!(r.held_out.len(), grid.len());
        assert_eq!(
            (
                r.held_out_images,
                r.fit_images,
                r.train_images,
                r.test_images
            ),
            (60, 540, 600, 300)
        );
        // Labels unrelated to the features: about chance (20%).
        let mut noise = clusters(300, 30, 5, 0.8, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        noise
            .labels
            .iter_mut()
            .for_each(|l| *l = Some(rng.random_range(0..5)));
        let r = linear_eval(&gpu, &train, &noise, &cfg).unwrap();
        assert!(r.top1 < 35.0, "{r:?}");
    }
}

/// tests/fixtures/linear_probe.safetensors: real features (a random-init ResNet-18 on 5,000 +
/// 1,000 Fashion-MNIST images) with scikit-learn's test accuracy at each C.
fn linear_probe_fixture() -> (Features, Features, Weights) {
    let w = load_safetensors(Path::new("tests/fixtures/linear_probe.safetensors")).unwrap();
    let features = |x: &str, y: &str| {
        let (shape, data) = &w.tensors[x];
        Features {
            data: data.clone(),
            dim: shape[1],
            labels: w.tensors[y].1.iter().map(|&l| Some(l as u32)).collect(),
        }
    };
    (
        features("train", "train_labels"),
        features("test", "test_labels"),
        w.clone(),
    )
}

fn sklearn_top1(w: &Weights, c: f64) -> f64 {
    w.metadata[&format!("sklearn_top1_C={c:?}")]
        .parse()
        .unwrap()
}

#[test]
fn the_lbfgs_probe_matches_scikit_learn_on_real_features() {
    let gpu = common::gpu();
    let (train, test, w) = linear_probe_fixture();
    // The same objective as scikit-learn's LogisticRegression(C): the same optimum, up to the
    // standardisation (ours from the 90% fitting split, scikit-learn's from all rows).
    for c in [0.1, 1.0, 10.0] {
        let cfg = LinearEvalConfig {
            cs: vec![c],
            ..Default::default()
        };
        let r = linear_eval(&gpu, &train, &test, &cfg).unwrap();
        let expected = sklearn_top1(&w, c);
        assert!(
            (r.top1 - expected).abs() <= 0.3,
            "C {c}: {:.2}% against scikit-learn's {expected}%",
            r.top1
        );
    }
    // The default grid: C chosen on the held-out split, within 0.5 point of scikit-learn's
    // default (C 1) or above it.
    let r = linear_eval(&gpu, &train, &test, &LinearEvalConfig::default()).unwrap();
    let default = sklearn_top1(&w, 1.0);
    assert!(
        r.top1 >= default - 0.5,
        "{:.2}% against scikit-learn's {default}% ({r:?})",
        r.top1
    );
    assert!((r.top1 - sklearn_top1(&w, r.chosen)).abs() <= 0.3, "{r:?}");
}

/// kNN in f64: cosine similarity, the k most similar, votes exp(s / T).
fn knn_reference(train: &Features, test: &Features, k: usize, t: f64) -> f64 {
    let norm = |r: &[f32]| -> Vec<f64> {
        let n = r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        r.iter().map(|v| f64::from(*v) / n).collect()
    };
    let bank: Vec<Vec<f64>> = (0..train.len()).map(|i| norm(train.row(i))).collect();
    let mut correct = 0;
    for q in 0..test.len() {
        let x = norm(test.row(q));
        let mut sims: Vec<(f64, usize)> = bank
            .iter()
            .enumerate()
            .map(|(i, b)| (b.iter().zip(&x).map(|(a, c)| a * c).sum(), i))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut votes = [0f64; 10];
        for &(s, i) in &sims[..k] {
            votes[train.labels[i].unwrap() as usize] += (s / t).exp();
        }
        let best = (0..10)
            .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
            .unwrap();
        correct += usize::from(best == test.labels[q].unwrap() as usize);
    }
    100.0 * correct as f64 / test.len() as f64
}

#[test]
fn knn_matches_the_reference() {
    let gpu = common::gpu();
    // Overlapping clusters, 13-d (padded on the device), 301 training rows (padded too).
    let (train, test) = (clusters(301, 13, 7, 2.0, 5), clusters(150, 13, 7, 2.0, 6));
    for (k, t) in [(1, 0.1), (20, 0.07), (200, 0.5)] {
        let r = knn_eval(&gpu, &train, &test, k, t).unwrap();
        let want = knn_reference(&train, &test, k, t);
        assert!((r.top1 - want).abs() < 1e-9, "k {k}: {} vs {want}", r.top1);
        assert!(r.top1 > 30.0 && r.top5 >= r.top1);
    }
    // An adapter that binds at most 16 KiB: the bank is scored in slices of 32 rows.
    let small = byol_wgpu::gpu::Gpu::new(&AdapterChoice {
        max_binding_bytes: Some(16 << 10),
        ..AdapterChoice::from_env()
    })
    .unwrap();
    for (k, t) in [(1, 0.1), (20, 0.07)] {
        let sliced = knn_eval(&small, &train, &test, k, t).unwrap();
        let want = knn_reference(&train, &test, k, t);
        assert!(
            (sliced.top1 - want).abs() < 1e-9,
            "k {k}: {} vs {want}",
            sliced.top1
        );
    }
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-sample")
}

#[test]
fn dataset_features_equal_the_encoder_on_normalised_pixels() {
    let gpu = common::gpu();
    let d = data::open(&sample(), Split::Test, 64).unwrap();
    let mut config = ResNetConfig::of_depth(18, 1, 1, Stem::Small).unwrap();
    config.width = 4;
    let w = random_encoder(&config, 3);
    let view = ViewSpec {
        side: 28,
        channels: 1,
        normalization: d.normalization(),
    };
    let f = encode_dataset(&gpu, &w, d.as_ref(), &view, 16, Some(40)).unwrap();
    let norm = d.normalization();
    let pixels: Vec<f32> = (0..40)
        .flat_map(|i| d.load(i).unwrap().pixels)
        .map(|v| (f32::from(v) / 255.0 - norm.mean[0]) / norm.std[0])
        .collect();
    let plain = Encoder::new(&gpu, &w, 16, [1, 28, 28])
        .unwrap()
        .embed(&pixels)
        .unwrap();
    let expected: Vec<f64> = plain.iter().map(|&v| f64::from(v)).collect();
    common::assert_close("features", &f.data, &expected, 1e-4, 1e-4);
    assert_eq!(f.labels[0], d.label(0));
}

fn byol(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_byol"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn eval_export_and_embed_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (s, r) = (sample(), run.to_str().unwrap().to_string());
    let (ok, _, err) = byol(&[
        "train",
        "--preset",
        "tiny",
        "--data",
        s.to_str().unwrap(),
        "--steps",
        "2",
        "--out",
        &r,
    ]);
    assert!(ok, "{err}");
    let quick = [
        "--epochs",
        "3",
        "--train-images",
        "200",
        "--test-images",
        "100",
    ];
    for extra in [
        &["--checkpoint", &r][..],
        &["--checkpoint", &r, "--random-init"],
        &["--pixels", "--data", s.to_str().unwrap()],
    ] {
        let (ok, out, err) = byol(&[&["eval", "linear", "--json"][..], extra, &quick].concat());
        assert!(ok, "{extra:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let top1 = v["report"]["top1"].as_f64().unwrap();
        assert!((10.0..=100.0).contains(&top1), "{extra:?}: {out}");
        assert_eq!(v["report"]["test_images"], 100);
    }
    let (ok, out, err) = byol(&["eval", "knn", "--checkpoint", &r, "--k", "5"]);
    assert!(ok && out.contains("top-1"), "{err}");

    // Export: torchvision names, loadable as an encoder.
    let exported = dir.path().join("encoder.safetensors");
    let (ok, _, err) = byol(&[
        "export",
        "--checkpoint",
        &r,
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let w = byol_wgpu::nn::load_safetensors(&exported).unwrap();
    assert!(w.shape("conv1.weight").is_some() && w.shape("layer4.1.bn2.running_var").is_some());
    assert!(w
        .names()
        .all(|n| !n.starts_with("online.") && !n.contains("projector")));
    ResNetConfig::infer(&w, "").unwrap();

    // Embed a folder of PNGs with the run, and with the exported file.
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let d = data::open(&s, Split::Test, 64).unwrap();
    for i in 0..5 {
        let img = d.load(i).unwrap();
        image::GrayImage::from_raw(28, 28, img.pixels)
            .unwrap()
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    for (weights, out) in [(&r, &a), (&exported.to_str().unwrap().to_string(), &b)] {
        let (ok, stdout, err) = byol(&[
            "embed",
            "--weights",
            weights,
            "--images",
            images.to_str().unwrap(),
            "--image-size",
            "28",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok && stdout.contains("5 x 32"), "{err}");
    }
    let (shape, _) = data::npy::read(&a).unwrap();
    assert_eq!(shape, [5, 32]);

    // Errors: no encoder, unlabelled data.
    let (ok, _, err) = byol(&["eval", "knn"]);
    assert!(!ok && err.contains("--checkpoint"), "{err}");
    let (ok, _, err) = byol(&[
        "eval",
        "knn",
        "--checkpoint",
        &r,
        "--data",
        images.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("error:"), "{err}");
}
