//! The live window under Xvfb on the test adapter: `byol train --gui` trains a few steps and
//! saves a screenshot with curves, the embedding map and the views; `byol watch` shows the run
//! from its files. Needs the `gui` feature and xvfb-run (CI installs xvfb).
#![cfg(feature = "gui")]

use std::path::Path;
use std::process::Command;

fn xvfb(args: &[&str]) -> std::process::Output {
    let out = Command::new("xvfb-run")
        .args([
            "-a",
            "-s",
            "-screen 0 1400x900x24",
            env!("CARGO_BIN_EXE_byol"),
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("xvfb-run is needed for the window tests (apt-get install xvfb): {e}")
        });
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The screenshot is the window (1280 x 860 logical pixels) and not blank.
fn check_screenshot(path: &Path) -> image::RgbImage {
    let img = image::open(path).unwrap().to_rgb8();
    assert!(
        img.width() >= 1000 && img.height() >= 700,
        "{}x{}",
        img.width(),
        img.height()
    );
    let distinct: std::collections::HashSet<[u8; 3]> =
        img.pixels().map(|p| p.0).step_by(7).collect();
    assert!(
        distinct.len() > 50,
        "a blank window ({} colours)",
        distinct.len()
    );
    img
}

#[test]
fn the_window_trains_and_shows_the_run_and_watch_shows_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let shot = dir.path().join("train.png");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-sample");
    xvfb(&[
        "train",
        "--gui",
        "--preset",
        "tiny",
        "--data",
        sample.to_str().unwrap(),
        "--steps",
        "40",
        "--screenshot-after",
        "3",
        "--screenshot",
        shot.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    check_screenshot(&shot);
    // The window stopped the run early, with a checkpoint, and the metrics reached the window.
    let metrics = byol_wgpu::train::metrics::read(&run.join("metrics.jsonl")).unwrap();
    assert!(
        metrics.len() >= 3 && metrics.len() < 40,
        "{} steps",
        metrics.len()
    );
    assert!(!byol_wgpu::train::checkpoint::list(&run).is_empty());
    // The window's run ends with the verdict too.
    let verdict = std::fs::read_to_string(run.join("verdict.json")).unwrap();
    assert!(verdict.contains("random_init_top1"), "{verdict}");

    let watched = dir.path().join("watch.png");
    xvfb(&[
        "watch",
        run.to_str().unwrap(),
        "--screenshot",
        watched.to_str().unwrap(),
    ]);
    check_screenshot(&watched);
}
