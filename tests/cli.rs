//! The `byol` binary: adapter listing, the demo, and the errors a user can meet.

use std::process::Command;

fn byol() -> Command {
    Command::new(env!("CARGO_BIN_EXE_byol"))
}

#[test]
fn info_lists_the_adapter_it_would_choose() {
    let out = byol().arg("info").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("(chosen)")
            && text.contains("backend:")
            && text.contains("max storage binding"),
        "{text}"
    );
}

#[test]
fn no_matching_adapter_exits_2_and_names_the_fix() {
    let out = byol()
        .args(["info", "--adapter", "no-such-adapter-anywhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no GPU adapter found") && err.contains("byol info"),
        "{err}"
    );
    if cfg!(target_os = "linux") {
        assert!(err.contains("mesa-vulkan-drivers"), "{err}");
    }
}

#[test]
fn the_environment_chooses_the_adapter_too() {
    let out = byol()
        .arg("info")
        .env("BYOL_ADAPTER", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unknown_backend_is_rejected() {
    let out = byol()
        .args(["info", "--backend", "glide"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown backend 'glide'") && err.contains("vulkan"),
        "{err}"
    );
}

#[test]
fn demo_trains_and_the_loss_falls() {
    let out = byol().args(["demo", "--steps", "41"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let losses: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("loss").nth(1))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert!(losses.len() >= 3, "{text}");
    assert!(losses.last().unwrap() < &(0.7 * losses[0]), "{text}");
}

/// The JSON a successful `byol bench ... --json` prints, after checking it names the adapter.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = byol().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["adapter"].is_string() && v["backend"].is_string());
    v
}

#[test]
fn bench_matmul_json_has_the_documented_fields() {
    let v = bench_json(&["bench", "matmul", "--json", "--max-size", "256"]);
    assert!(v["peak_gflops"].as_f64().unwrap() > 0.0);
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(r["kernel"].is_string() && r["m"].is_u64() && r["n"].is_u64() && r["k"].is_u64());
        assert!(r["gflops"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_step_json_has_the_documented_fields() {
    let v = bench_json(&[
        "bench",
        "step",
        "--json",
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--image-size",
        "28",
        "--channels",
        "1",
    ]);
    assert_eq!(v["batch"], 16, "the tiny preset's batch");
    let per_step = v["seconds_per_step"].as_f64().unwrap();
    assert!(per_step > 0.0);
    assert!((v["images_per_s"].as_f64().unwrap() * per_step - 16.0).abs() < 1e-6);
    assert!(v["seconds_to_first_step"].as_f64().unwrap() > 0.0, "{v}");
    // At least the encoder's 20 convolutions, forward, in both networks.
    assert!(v["dispatches_per_step"].as_u64().unwrap() > 40, "{v}");
    let r = &v["roofline"];
    for field in [
        "flops_per_step",
        "bytes_per_step",
        "gflops",
        "gbps",
        "peak_gflops",
        "peak_gbps",
    ] {
        assert!(r[field].as_f64().unwrap() > 0.0, "{field}: {r}");
    }
    // Families, most FLOPs first: the convolutions lead, and they add up to the step.
    let families = r["families"].as_array().unwrap();
    assert_eq!(families[0]["family"], "conv2d", "{r}");
    let sum: f64 = families.iter().map(|f| f["flops"].as_f64().unwrap()).sum();
    assert!((sum / r["flops_per_step"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(v["bytes_allocated_after_first_step"], 0);
    // Software adapters do not time kernel candidates unless asked (`--tune`).
    let tuning = v["tuning"].as_bool().unwrap();
    let tuned = v["tuned_problems"].as_u64().unwrap();
    assert!(tuning || tuned == 0, "{v}");
    assert!(v["tuning_seconds"].as_f64().unwrap() >= 0.0, "{v}");
}

#[test]
fn a_tuning_switch_that_is_not_on_or_off_is_rejected() {
    for (args, env) in [
        (vec!["--tune", "maybe", "info"], None),
        (vec!["info"], Some("perhaps")),
    ] {
        let mut cmd = byol();
        cmd.args(&args);
        if let Some(value) = env {
            cmd.env("BYOL_TUNE", value);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--tune"), "{err}");
    }
}

#[test]
fn bench_memory_json_has_the_documented_fields() {
    let v = bench_json(&["bench", "memory", "--json", "--shape", "2", "3", "5", "7"]);
    assert_eq!(v["shape"], serde_json::json!([2, 3, 5, 7]));
    assert!(v["peak_gbps"].as_f64().unwrap() > 0.0);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    for r in results {
        assert!(r["kernel"].is_string());
        // Tensor-sized operands of 2 * 3 * 5 * 7 floats: 1 to 3 of them.
        assert!([840, 1680, 2520].contains(&r["bytes"].as_u64().unwrap()));
        assert!(r["gbps"].as_f64().unwrap() > 0.0);
    }
}

/// Linux CI installs Mesa's OpenGL driver (llvmpipe) beside lavapipe, so a GL adapter exists.
#[cfg(target_os = "linux")]
#[test]
fn an_opengl_adapter_is_named_slow_before_the_kernels_compile() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let out = byol().args(["--backend", "gl", "info"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("slow adapter:"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut child = byol()
        .args([
            "--backend",
            "gl",
            "train",
            "--preset",
            "tiny",
            "--steps",
            "1",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let compiling = line.starts_with("compiling");
        lines.push(line);
        if compiling {
            break;
        }
    }
    // The compilation itself takes minutes on llvmpipe: the lines before it are the test.
    child.kill().unwrap();
    child.wait().unwrap();
    let slow = lines.iter().position(|l| l.starts_with("slow adapter:"));
    let compiling = lines.iter().position(|l| l.starts_with("compiling"));
    assert!(
        matches!((slow, compiling), (Some(s), Some(c)) if s < c),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("mesa-vulkan-drivers")),
        "{lines:#?}"
    );
}
