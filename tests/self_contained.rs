//! The repository alone is enough: a clone of its last commit, in a temporary directory with
//! nothing beside it, holds every file the tests and the default run read (fixtures, the
//! Fashion-MNIST sample), no test, source or CI file reaches outside the repository, and the
//! clone passes its PyTorch-fixture test built from its own files.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository-relative paths that a Rust file names in string literals under the
/// repository's data folders.
fn data_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for literal in source.split('"').skip(1).step_by(2) {
        for root in ["tests/fixtures/", "assets/"] {
            if literal.starts_with(root) && literal.len() > root.len() {
                found.push(literal.to_string());
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn a_clone_with_nothing_beside_it_holds_every_file_the_tests_read() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !repo.join(".git").exists() {
        // A packaged crate, not a checkout: nothing to clone.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("byol-wgpu");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo)
        .arg(&clone)
        .status()
        .expect("git runs");
    assert!(status.success(), "git clone failed");

    let mut sources = Vec::new();
    for folder in ["src", "tests", "benches"] {
        rust_files(&clone.join(folder), &mut sources);
    }
    assert!(
        sources.len() > 20,
        "the clone has {} Rust files",
        sources.len()
    );
    // Spelled in two pieces, so that this file does not name it.
    let outside = concat!("..", "/shared");
    let mut named = 0;
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        for path in data_paths(&text) {
            named += 1;
            assert!(
                clone.join(&path).exists(),
                "{} reads {path}, which a clone does not have",
                file.display()
            );
        }
        assert!(
            !text.contains(outside),
            "{} reads from outside the repository",
            file.display()
        );
    }
    // The PyTorch fixtures and the sample data are named at least once each.
    assert!(named >= 5, "only {named} data paths named");
    for fixture in ["byol_step.safetensors", "resnet_forward.safetensors"] {
        assert!(clone.join("tests/fixtures").join(fixture).is_file());
    }
    let ci = std::fs::read_to_string(clone.join(".ci/run")).unwrap();
    assert!(
        !ci.contains(outside),
        ".ci/run reads from outside the repository"
    );
    the_clone_passes_its_fixture_test(&clone);
}

/// Runs this build's tests/byol_step.rs (the whole step against the PyTorch fixtures) on the
/// clone's files, and on an empty directory, where it must fail: the fixtures it passes with
/// are the clone's.
fn the_clone_passes_its_fixture_test(clone: &Path) {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let test = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("byol_step-") && p.extension().is_none()
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("the byol_step test is built beside this one (cargo test builds every test first)");
    let run = |repo: &Path| {
        Command::new(&test)
            .env("BYOL_TEST_REPO", repo)
            .args(["two_steps_match_pytorch", "--exact"])
            .output()
            .unwrap()
    };
    let out = run(clone);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("two_steps_match_pytorch ... ok"),
        "the fixture test on the clone's files: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(
        !run(empty.path()).status.success(),
        "the fixture test passed without fixtures: it does not read BYOL_TEST_REPO"
    );
}
