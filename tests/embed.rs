//! `byol embed`: PyTorch's inference output reproduced from files, and the bad inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use byol_wgpu::data::npy;
use byol_wgpu::nn::load_safetensors;
use common::assert_close;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet_forward.safetensors")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("byol-embed-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn embed(weights: &Path, images: &Path, out: &Path, batch: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_byol"))
        .args(["embed", "--weights"])
        .arg(weights)
        .arg("--npy")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(["--batch", batch])
        .output()
        .unwrap()
}

#[test]
fn embed_reproduces_pytorch_inference_in_uneven_batches() {
    let dir = scratch("fixture");
    let w = load_safetensors(&fixture_path()).unwrap();
    let (shape, data) = w.require("input").unwrap();
    npy::write(&dir.join("x.npy"), shape, data).unwrap();
    // 4 images in batches of 3: the second batch is padded.
    let out = embed(&fixture_path(), &dir.join("x.npy"), &dir.join("y.npy"), "3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (y_shape, y) = npy::read(&dir.join("y.npy")).unwrap();
    assert_eq!(y_shape, w.shape("output_eval").unwrap());
    let want: Vec<f64> = w
        .data("output_eval")
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    assert_close("embed", &y, &want, 1e-4, 1e-3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_round_trips() {
    let dir = scratch("npy");
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    for shape in [vec![24], vec![2, 3, 4], vec![1, 2, 3, 2, 2]] {
        npy::write(&dir.join("a.npy"), &shape, &data).unwrap();
        assert_eq!(
            npy::read(&dir.join("a.npy")).unwrap(),
            (shape, data.clone())
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let dir = scratch("bad");
    let images = dir.join("x.npy");
    npy::write(&images, &[2, 1, 8, 8], &[0.0; 128]).unwrap();
    let cases: Vec<(PathBuf, PathBuf, &str)> = vec![
        (
            dir.join("missing.safetensors"),
            images.clone(),
            "missing.safetensors",
        ),
        (fixture_path(), dir.join("missing.npy"), "missing.npy"),
        (
            fixture_path(),
            images.clone(),
            "1 channels, the encoder takes 3",
        ),
    ];
    std::fs::write(dir.join("garbage.npy"), b"not an array").unwrap();
    std::fs::write(dir.join("garbage.safetensors"), b"not tensors").unwrap();
    let more = vec![
        (
            fixture_path(),
            dir.join("garbage.npy"),
            "not a float32 .npy array",
        ),
        (
            dir.join("garbage.safetensors"),
            images.clone(),
            "not a safetensors file",
        ),
    ];
    for (weights, x, needle) in cases.into_iter().chain(more) {
        let out = embed(&weights, &x, &dir.join("y.npy"), "8");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "expected one line with '{needle}', got: {err}"
        );
        assert!(!dir.join("y.npy").exists(), "no output on failure");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn local_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Encoders of other shapes (tests/fixtures/make_embed_fixtures.py): non-square odd images,
/// bottleneck blocks, one input channel, both stems.
#[test]
fn embed_reproduces_pytorch_on_other_architectures() {
    for name in [
        "embed_imagenet_basic_odd",
        "embed_small_bottleneck_gray",
        "embed_imagenet_bottleneck",
    ] {
        let dir = scratch(name);
        let path = local_fixture(&format!("{name}.safetensors"));
        let w = load_safetensors(&path).unwrap();
        let config = byol_wgpu::nn::ResNetConfig::infer(&w, "encoder.").unwrap();
        assert_eq!(
            serde_json::to_value(config.block).unwrap(),
            w.metadata["block"].as_str(),
            "{name}"
        );
        assert_eq!(
            serde_json::to_value(config.stem).unwrap(),
            w.metadata["stem"].as_str(),
            "{name}"
        );
        let (shape, data) = w.require("input").unwrap();
        npy::write(&dir.join("x.npy"), shape, data).unwrap();
        let out = embed(&path, &dir.join("x.npy"), &dir.join("y.npy"), "2");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, y) = npy::read(&dir.join("y.npy")).unwrap();
        let want: Vec<f64> = w
            .data("output_eval")
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_close(name, &y, &want, 1e-4, 1e-3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Every key and shape of torchvision.models.resnet18() is what our ResNet-18 reads.
#[test]
fn torchvision_resnet18_keys_are_read_as_resnet18() {
    let text = std::fs::read_to_string(local_fixture("torchvision_resnet18_keys.json")).unwrap();
    let keys: std::collections::BTreeMap<String, Vec<usize>> = serde_json::from_str(&text).unwrap();
    let mut w = byol_wgpu::nn::Weights::default();
    for (name, shape) in &keys {
        w.insert(name, shape, vec![0.0; shape.iter().product()]);
    }
    let config = byol_wgpu::nn::ResNetConfig::infer(&w, "").unwrap();
    let expected =
        byol_wgpu::nn::ResNetConfig::of_depth(18, 1, 3, byol_wgpu::nn::Stem::Imagenet).unwrap();
    assert_eq!(config, expected);
    let ours: Vec<(String, Vec<usize>)> = expected.param_shapes();
    let theirs: Vec<(&String, &Vec<usize>)> = keys
        .iter()
        .filter(|(k, _)| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked"))
        .collect();
    assert_eq!(ours.len(), theirs.len());
    for (name, shape) in &ours {
        assert_eq!(keys.get(name), Some(shape), "{name}");
    }
}
