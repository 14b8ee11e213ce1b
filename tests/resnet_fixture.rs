//! The ResNet encoder against PyTorch (tests/fixtures/resnet_forward.safetensors): inference
//! output, training output, every gradient, and the running statistics after the training pass.

mod common;

use std::path::PathBuf;

use byol_wgpu::graph::{Executable, Graph, TensorId};
use byol_wgpu::nn::{
    load_safetensors, upload, Block, Layers, Mode, ParamRole, ResNetConfig, Stem, Weights,
};
use byol_wgpu::ops::numel;
use common::{assert_close, gpu};

fn fixture() -> Weights {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet_forward.safetensors");
    load_safetensors(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn expect(w: &Weights, name: &str) -> Vec<f64> {
    w.require(name)
        .unwrap()
        .1
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

/// The fixture README's tolerance: |a - b| <= 1e-4 + 1e-3 |b|.
fn check(what: &str, got: &[f32], w: &Weights, name: &str) {
    assert_close(what, got, &expect(w, name), 1e-4, 1e-3);
}

fn meta<T: serde::de::DeserializeOwned>(w: &Weights, key: &str) -> T {
    serde_json::from_str(&w.metadata[key]).unwrap()
}

#[test]
fn architecture_is_inferred_from_the_keys() {
    let w = fixture();
    let config = ResNetConfig::infer(&w, "encoder.").unwrap();
    let layers: Vec<usize> = meta(&w, "layers");
    assert_eq!(config.layers.to_vec(), layers);
    assert_eq!(config.width, meta::<usize>(&w, "width"));
    assert_eq!(config.in_channels, meta::<usize>(&w, "in_ch"));
    assert_eq!(
        config.block,
        if meta::<String>(&w, "block") == "basic" {
            Block::Basic
        } else {
            Block::Bottleneck
        }
    );
    assert_eq!(
        config.stem,
        if meta::<String>(&w, "stem") == "small" {
            Stem::Small
        } else {
            Stem::Imagenet
        }
    );
}

fn build(w: &Weights, mode: Mode) -> (Graph, TensorId, TensorId, Vec<byol_wgpu::nn::NamedParam>) {
    let config = ResNetConfig::infer(w, "encoder.").unwrap();
    let mut g = Graph::new();
    let x = g.input("input", w.shape("input").unwrap());
    let mut layers = Layers::new(&mut g, mode, "");
    let y = config.build(&mut layers, x);
    let params = layers.params;
    (g, x, y, params)
}

#[test]
fn inference_matches_pytorch() {
    let w = fixture();
    let (g, x, y, params) = build(&w, Mode::Eval);
    let exe = Executable::new(&gpu(), &g, &[y]).unwrap();
    upload(&exe, &params, &w, "encoder.").unwrap();
    let out = exe.run(&[(x, w.data("input").unwrap())]).unwrap();
    check("output_eval", &out[0], &w, "output_eval");
}

#[test]
fn training_pass_matches_pytorch() {
    let w = fixture();
    let (mut g, x, y, params) = build(&w, Mode::Train);
    let r = g.input("grad_output", w.shape("grad_output").unwrap());
    let weighted = g.mul(y, r);
    let flat = g.reshape(weighted, &[numel(g.shape(weighted))]);
    let loss = g.sum(flat, 0);
    let trainable: Vec<&byol_wgpu::nn::NamedParam> = params
        .iter()
        .filter(|p| p.role != ParamRole::RunningStat)
        .collect();
    let wrt: Vec<TensorId> = std::iter::once(x)
        .chain(trainable.iter().map(|p| p.id))
        .collect();
    let grads = g.grad(loss, &wrt).unwrap();
    let outputs: Vec<TensorId> = std::iter::once(y).chain(grads.iter().copied()).collect();
    let exe = Executable::new(&gpu(), &g, &outputs).unwrap();
    upload(&exe, &params, &w, "encoder.").unwrap();
    let out = exe
        .run(&[
            (x, w.data("input").unwrap()),
            (r, w.data("grad_output").unwrap()),
        ])
        .unwrap();
    check("output_train", &out[0], &w, "output_train");
    check("grad.input", &out[1], &w, "grad.input");
    for (p, got) in trainable.iter().zip(&out[2..]) {
        check(
            &format!("grad of {}", p.name),
            got,
            &w,
            &format!("grad.encoder.{}", p.name),
        );
    }
    for p in params.iter().filter(|p| p.role == ParamRole::RunningStat) {
        check(
            &format!("{} after the pass", p.name),
            &exe.read(p.id).unwrap(),
            &w,
            &format!("after_train.encoder.{}", p.name),
        );
    }
}

#[test]
fn a_file_that_is_not_a_resnet_is_rejected_clearly() {
    let w = fixture();
    let mut broken = w.clone();
    broken.tensors.remove("encoder.layer2.0.bn1.running_var");
    let err = ResNetConfig::infer(&broken, "encoder.")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer2.0.bn1.running_var") && err.contains("missing"),
        "{err}"
    );

    let mut reshaped = w.clone();
    reshaped.insert(
        "encoder.layer1.0.conv2.weight",
        &[3, 3, 3, 3],
        vec![0.0; 81],
    );
    let err = ResNetConfig::infer(&reshaped, "encoder.")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer1.0.conv2.weight") && err.contains("shape"),
        "{err}"
    );

    let mut extra = w.clone();
    extra.insert("encoder.layer5.0.conv1.weight", &[1], vec![0.0]);
    let err = ResNetConfig::infer(&extra, "encoder.")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected tensor 'layer5.0.conv1.weight'"),
        "{err}"
    );

    let mut ignored = w.clone();
    ignored.insert("encoder.fc.weight", &[10, 64], vec![0.0; 640]);
    ignored.insert("encoder.bn1.num_batches_tracked", &[], vec![1.0]);
    assert!(ResNetConfig::infer(&ignored, "encoder.").is_ok());

    let err = ResNetConfig::infer(&w, "nothing.").unwrap_err().to_string();
    assert!(err.contains("conv1.weight"), "{err}");
}

#[test]
fn weights_round_trip_through_safetensors() {
    let w = fixture();
    let dir = std::env::temp_dir().join(format!("byol-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("copy.safetensors");
    byol_wgpu::nn::save_safetensors(&path, &w).unwrap();
    let back = load_safetensors(&path).unwrap();
    assert_eq!(back.tensors, w.tensors);
    assert_eq!(back.metadata, w.metadata);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("byol-truncated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.safetensors");
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet_forward.safetensors"),
    )
    .unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_safetensors(&path).unwrap_err().to_string();
    assert!(
        err.contains("broken.safetensors") && err.contains("not a safetensors file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
