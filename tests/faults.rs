//! Faults and bad input, as a battery: every file format the CLI reads survives random and
//! mutated bytes with a clear error and no panic; decompression bombs are refused before they
//! inflate; a damaged newest checkpoint falls back to the previous one; a full disk keeps the
//! earlier checkpoints; kill -9 and signals lose nothing a resume cannot redo; a batch the
//! adapter cannot hold is split into micro-batches. (Bad config values and flags:
//! tests/train.rs.)
//!
//! The random sweep runs BYOL_FUZZ_CASES cases per format (default 2,000); set it higher for
//! a longer sweep. A case that panics is written to the system's temporary directory.

mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Command, Stdio};

use byol_wgpu::data::{self, Image, Normalization, ViewSpec};
use byol_wgpu::gpu::AdapterChoice;
use byol_wgpu::nn::{save_safetensors, Weights};
use byol_wgpu::train::{checkpoint, metrics, TrainConfig, Trainer};
use common::{deterministic, sample, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cases() -> usize {
    std::env::var("BYOL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// A mutation of one of `seeds`: bit flips, overwrites with boundary values, truncation,
/// duplicated or deleted spans, or bytes that are random throughout.
fn mutate(seeds: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = seeds[rng.random_range(0..seeds.len())].clone();
    if rng.random_range(0..10) == 0 || b.is_empty() {
        let len = rng.random_range(0..512);
        return (0..len).map(|_| rng.random()).collect();
    }
    for _ in 0..rng.random_range(1..5) {
        let at = rng.random_range(0..b.len().max(1));
        match rng.random_range(0..6) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b[at] = [0, 0xff, 0x7f, 0x80, b'0', b'"'][rng.random_range(0..6)],
            2 => b.truncate(at),
            3 => {
                let end = (at + rng.random_range(1..64)).min(b.len());
                let span = b[at..end].to_vec();
                b.splice(at..at, span);
            }
            4 => {
                let end = (at + rng.random_range(1..64)).min(b.len());
                b.drain(at..end);
            }
            _ => {
                // Four bytes of a large or zero number, as a corrupt header field would hold.
                let v: u32 = [0, 1, u32::MAX, 0x7fff_ffff, 60000][rng.random_range(0..5)];
                for (i, x) in v.to_be_bytes().iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + i) {
                        *slot = *x;
                    }
                }
            }
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

/// Feeds `cases()` mutations of `seeds` to `parse`: each may succeed or fail with a message,
/// but none may panic. The seeds themselves must parse.
fn sweep(format: &str, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) -> Result<(), String>) {
    for (i, s) in seeds.iter().enumerate() {
        parse(s).unwrap_or_else(|e| panic!("{format}: seed {i} does not parse: {e}"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(format.len() as u64 * 7919);
    let mut refused = 0;
    for case in 0..cases() {
        let bytes = mutate(seeds, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| parse(&bytes))) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                assert!(
                    !msg.trim().is_empty(),
                    "{format}: case {case}: an empty error"
                );
                refused += 1;
            }
            Err(_) => {
                let keep = std::env::temp_dir().join(format!("byol-fuzz-{format}-{case}"));
                std::fs::write(&keep, &bytes).unwrap();
                panic!(
                    "{format}: case {case} panicked; its bytes: {}",
                    keep.display()
                );
            }
        }
    }
    assert!(refused > 0, "{format}: no mutation was refused");
}

/// `parse` given a path: the bytes are written to `file` first.
fn through_file<'a>(
    file: &'a Path,
    parse: impl Fn(&Path) -> byol_wgpu::Result<()> + 'a,
) -> impl Fn(&[u8]) -> Result<(), String> + 'a {
    move |bytes| {
        std::fs::write(file, bytes).unwrap();
        parse(file).map_err(|e| e.to_string())
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

fn encoded(format: image::ImageFormat, rgb: bool, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(23, 17, |x, y| {
        image::Rgb([(x * 11) as u8 ^ seed, (y * 13) as u8, (x + y) as u8])
    });
    let img = if rgb {
        image::DynamicImage::ImageRgb8(img)
    } else {
        image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(img).into_luma8())
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn idx_cifar_and_npy_files_survive_random_and_mutated_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case");
    let pixels: Vec<u8> = (0..3 * 28 * 28).map(|i| (i * 7) as u8).collect();
    let images = idx(&[3, 28, 28], &pixels);
    let labels = idx(&[3], &[1, 2, 3]);
    let read_idx = |p: &Path| data::idx::read_idx(p).map(|_| ());
    sweep(
        "idx",
        &[images.clone(), labels.clone()],
        through_file(&file, read_idx),
    );
    sweep(
        "idx-gz",
        &[gz(&images), gz(&labels)],
        through_file(&file, read_idx),
    );

    let record: Vec<u8> = (0..3073u32).map(|i| (i % 251) as u8).collect();
    sweep(
        "cifar",
        &[record.repeat(2)],
        through_file(&file, |p| data::cifar::read_batch(p, 1).map(|_| ())),
    );

    let npy = dir.path().join("seed.npy");
    data::npy::write(&npy, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    sweep(
        "npy",
        &[std::fs::read(&npy).unwrap()],
        through_file(&file, |p| data::npy::read(p).map(|_| ())),
    );
}

#[test]
fn images_survive_random_and_mutated_bytes() {
    use image::ImageFormat::{Jpeg, Png, WebP};
    let seeds = vec![
        encoded(Png, true, 1),
        encoded(Png, false, 2),
        encoded(Jpeg, true, 3),
        encoded(Jpeg, false, 4),
        encoded(WebP, true, 5),
    ];
    sweep("image", &seeds, |b| Image::decode(b, 64).map(|_| ()));
}

#[test]
fn safetensors_checkpoints_configs_and_metrics_survive_random_and_mutated_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case");
    let mut w = Weights::default();
    w.insert("a.weight", &[2, 3], vec![1.0; 6]);
    w.insert("b.bias", &[4], vec![0.5; 4]);
    let st = dir.path().join("seed.safetensors");
    save_safetensors(&st, &w).unwrap();
    sweep(
        "safetensors",
        &[std::fs::read(&st).unwrap()],
        through_file(&file, |p| byol_wgpu::nn::load_safetensors(p).map(|_| ())),
    );

    // A checkpoint: state.json and tensors.safetensors mutated in turn.
    let run = dir.path().join("run");
    let state = checkpoint::TrainState {
        format: checkpoint::FORMAT,
        step: 7,
        epoch: 1,
        position: 32,
        skipped: 0,
        elapsed_s: 1.5,
        views: ViewSpec {
            side: 28,
            channels: 1,
            normalization: Normalization::IMAGENET,
        },
        config: TrainConfig::preset("tiny").unwrap(),
    };
    let ckpt = checkpoint::save(&run, &state, &w).unwrap();
    for name in ["state.json", "tensors.safetensors"] {
        let path = ckpt.join(name);
        let good = std::fs::read(&path).unwrap();
        sweep(
            &format!("checkpoint-{name}"),
            std::slice::from_ref(&good),
            |b| {
                std::fs::write(&path, b).unwrap();
                checkpoint::load(&ckpt)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        );
        std::fs::write(&path, good).unwrap();
    }

    let toml = "preset = \"tiny\"\nbatch = 32\nlr = 0.5\nepochs = 2\nblur = false\nseed = 3\n";
    sweep(
        "config",
        &[toml.as_bytes().to_vec()],
        through_file(&file, |p| {
            TrainConfig::from_file(Some(p), None).and_then(|c| c.validate())
        }),
    );

    let line = r#"{"step":1,"epoch":0,"loss":3.9127984046936035,"lr":0.1,"tau":0.99,"collapse_std":0.2,"weight_norm":10.0,"grad_norm":0.5,"probe_accuracy":12.5,"images_per_s":20.0,"elapsed_s":0.8}"#;
    let log = format!("{line}\n{}\n", line.replace("\"step\":1", "\"step\":2"));
    sweep(
        "metrics",
        &[log.into_bytes()],
        through_file(&file, |p| metrics::read(p).map(|_| ())),
    );
}

/// Sets the 4-byte big-endian field at `at` of a PNG's IHDR and fixes the chunk's CRC.
fn png_with_size(width: u32, height: u32) -> Vec<u8> {
    let mut png = encoded(image::ImageFormat::Png, false, 0);
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A JPEG whose frame header claims `width` x `height`.
fn jpeg_with_size(width: u16, height: u16) -> Vec<u8> {
    let mut jpg = encoded(image::ImageFormat::Jpeg, false, 0);
    let sof = jpg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline JPEG has SOF0");
    jpg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpg
}

#[test]
fn decompression_bombs_are_refused_before_they_inflate() {
    // Images that claim 60000 x 60000 pixels (3.6 GB decoded) from a few hundred bytes.
    for (what, bytes) in [
        ("PNG", png_with_size(60000, 60000)),
        ("JPEG", jpeg_with_size(60000, 60000)),
    ] {
        let err = Image::decode(&bytes, 64).expect_err(what);
        assert!(!err.is_empty(), "{what}");
    }

    // An IDX gzip whose header claims one 28x28 image and whose stream inflates to 256 MiB,
    // and one whose header claims 2^64 bytes.
    let dir = tempfile::tempdir().unwrap();
    let mut body = idx(&[1, 28, 28], &[]);
    body.resize(256 << 20, 0);
    let bomb = dir.path().join("train-images-idx3-ubyte.gz");
    std::fs::write(&bomb, gz(&body)).unwrap();
    let err = data::idx::read_idx(&bomb).err().unwrap().to_string();
    assert!(
        err.contains("need 784 bytes") && err.contains("has more"),
        "{err}"
    );
    std::fs::write(&bomb, gz(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[0; 64]))).unwrap();
    let err = data::idx::read_idx(&bomb).err().unwrap().to_string();
    assert!(err.contains("header is corrupt"), "{err}");
}

/// tiny(1) with a checkpoint every 2 steps.
fn tiny_checkpointed() -> TrainConfig {
    let mut c = common::tiny(1);
    c.checkpoint_every = 2;
    c
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    train(&tiny_checkpointed(), &straight, 6);
    let original = dir.path().join("original");
    train(&tiny_checkpointed(), &original, 4); // checkpoints at steps 2 and 4
                                               // What is damaged, what the note must name, and the damage.
    type Damage = (&'static str, &'static str, fn(&Path));
    let damages: [Damage; 4] = [
        ("truncated tensors", "tensors.safetensors", |c| {
            let t = c.join("tensors.safetensors");
            let b = std::fs::read(&t).unwrap();
            std::fs::write(&t, &b[..b.len() / 2]).unwrap();
        }),
        ("bad JSON", "state.json", |c| {
            std::fs::write(c.join("state.json"), "{\"step\": 4,").unwrap()
        }),
        ("a missing file", "tensors.safetensors", |c| {
            std::fs::remove_file(c.join("tensors.safetensors")).unwrap()
        }),
        ("one flipped bit in a tensor", "CRC-32", |c| {
            // The file still parses: only the checksum in state.json tells.
            let t = c.join("tensors.safetensors");
            let mut b = std::fs::read(&t).unwrap();
            let last = b.len() - 3;
            b[last] ^= 0x10;
            std::fs::write(&t, &b).unwrap();
        }),
    ];
    for (what, named, damage) in damages {
        let run = dir.path().join(what.replace(' ', "-"));
        copy_dir(&original, &run);
        let newest = checkpoint::list(&run).pop().unwrap();
        damage(&newest);
        let mut t = Trainer::resume(&common::alone(), &common::gpu(), &run, Some(6)).unwrap();
        assert_eq!(t.state().step, 2, "{what}: resumed from step 2");
        let note = t.notes.join("\n");
        assert!(
            note.contains("step-00000004 is damaged")
                && note.contains(named)
                && note.contains("using")
                && note.contains("step-00000002"),
            "{what}: {note}"
        );
        t.run(&mut |_| {}).unwrap();
        assert_eq!(deterministic(&run), deterministic(&straight), "{what}");
    }

    // The CLI says so in one line before training.
    let run = dir.path().join("cli");
    copy_dir(&original, &run);
    damages[3].2(&checkpoint::list(&run).pop().unwrap());
    let out = byol()
        .args(["train", "--resume", run.to_str().unwrap(), "--steps", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("is damaged (") && l.contains("CRC-32") && l.contains("using")),
        "{err}"
    );

    // Nothing readable at all: one error naming every checkpoint's fault.
    let run = dir.path().join("none");
    copy_dir(&original, &run);
    for c in checkpoint::list(&run) {
        damages[1].2(&c);
    }
    let err = Trainer::resume(&common::alone(), &common::gpu(), &run, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("every checkpoint is damaged"), "{err}");
}

fn byol() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_byol"));
    c.env_remove("BYOL_MAX_BINDING_BYTES");
    c
}

/// `byol train` on the tiny preset's sample as tiny_checkpointed() configures it, into `run`.
fn train_command(run: &Path) -> Command {
    let mut c = byol();
    c.args([
        "train",
        "--preset",
        "tiny",
        "--data",
        sample().to_str().unwrap(),
    ])
    .args(["--subset", "160", "--batch", "16", "--epochs", "2"])
    .args(["--warmup-epochs", "0.5", "--checkpoint-every", "2"])
    .args(["--out", run.to_str().unwrap()])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Starts `command` and sends it `signal` once its run has logged `after` steps.
fn signal_after(
    command: &mut Command,
    run: &Path,
    after: usize,
    signal: &str,
) -> std::process::Output {
    let mut child = command.spawn().unwrap();
    let metrics = run.join("metrics.jsonl");
    let steps = || std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
    while steps() < after {
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIG{signal}: the run ended before the signal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait_with_output().unwrap()
}

/// SIGINT and SIGTERM: the run finishes the step in flight, writes a checkpoint, exits 130
/// naming it, and resumes from it to the very metrics of a run never stopped. SIGKILL: the
/// run dies at once, and a resume from its last checkpoint redoes the steps after it.
#[test]
fn signals_and_kill_9_lose_nothing_a_resume_cannot_redo() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    train(&tiny_checkpointed(), &straight, 20);
    for signal in ["INT", "TERM", "KILL"] {
        let run = dir.path().join(signal);
        let out = signal_after(&mut train_command(&run), &run, 3, signal);
        let err = String::from_utf8_lossy(&out.stderr);
        if signal == "KILL" {
            assert_eq!(out.status.code(), None, "killed by the signal: {err}");
        } else {
            assert_eq!(out.status.code(), Some(130), "SIG{signal}: {err}");
            let stopped = deterministic(&run).len();
            assert!(stopped < 20, "SIG{signal}: the run went on to the end");
            let last = err.lines().last().unwrap();
            let name = format!("step-{stopped:08}");
            assert!(
                last.contains(&format!("interrupted at step {stopped}"))
                    && last.contains(&name)
                    && last.contains("--resume"),
                "SIG{signal}: {err}"
            );
        }
        let mut t = Trainer::resume(&common::alone(), &common::gpu(), &run, Some(20)).unwrap();
        t.run(&mut |_| {}).unwrap();
        assert_eq!(deterministic(&run), deterministic(&straight), "SIG{signal}");
    }
}

/// Runs `command` with files limited to `bytes` (writes past it fail with EFBIG, as on a full
/// disk; the signal that would kill the process for it is ignored).
fn with_file_size_limit(command: &mut Command, bytes: u64) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are made.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        })
    }
}

#[test]
fn a_checkpoint_that_cannot_be_written_is_a_clear_error_and_keeps_the_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train(&tiny_checkpointed(), &run, 2);
    let first = checkpoint::list(&run).pop().unwrap();
    let tensors = std::fs::metadata(first.join("tensors.safetensors"))
        .unwrap()
        .len();
    let before = std::fs::read(first.join("tensors.safetensors")).unwrap();

    let out = with_file_size_limit(
        byol().args(["train", "--resume", run.to_str().unwrap(), "--steps", "4"]),
        tensors / 2,
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: ")
            && last.contains("step-00000004")
            && last.contains("checkpoint not written")
            && last.contains("earlier checkpoints are intact"),
        "{err}"
    );
    // The earlier checkpoint is as it was, nothing half-written is left, and the run resumes.
    assert_eq!(
        checkpoint::list(&run),
        std::slice::from_ref(&first),
        "only the earlier checkpoint"
    );
    assert_eq!(
        std::fs::read(first.join("tensors.safetensors")).unwrap(),
        before
    );
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let mut t = Trainer::resume(&common::alone(), &common::gpu(), &run, Some(4)).unwrap();
    t.run(&mut |_| {}).unwrap();
    assert_eq!(t.state().step, 4);
}

#[test]
fn a_batch_the_adapter_cannot_hold_is_split_into_micro_batches() {
    let dir = tempfile::tempdir().unwrap();
    // At 100,000 bytes a binding, a micro-batch of 16 tiny-preset images does not fit (its
    // largest activation is 200,704 bytes) and one of 4 does.
    let run = dir.path().join("split");
    let out = train_command(&run)
        .args(["--steps", "2", "--max-binding-bytes", "100000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines().any(
            |l| l.starts_with("batch 16 does not fit this adapter at once")
                && l.contains("4 micro-batches of 4")
        ),
        "{err}"
    );
    // Exactly the run --accumulate 4 makes on an adapter that holds it all.
    let mut config = tiny_checkpointed();
    config.accumulate = 4;
    let accumulated = dir.path().join("accumulated");
    train(&config, &accumulated, 2);
    assert_eq!(deterministic(&run), deterministic(&accumulated));
    assert_eq!(checkpoint::load(&run).unwrap().state.config.accumulate, 4);
}

#[test]
fn bench_augment_fits_its_batch_to_the_adapter() {
    // 224-px RGB views take 602,112 bytes an image: 6 fit in 4 MB, the 32-px batch is whole.
    let out = byol()
        .args(["bench", "augment", "--json", "--batch", "256"])
        .args(["--max-binding-bytes", "4000000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches: Vec<(u64, u64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["side"].as_u64().unwrap(), r["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(batches, [(32, 256), (224, 6)]);
}

/// A capped adapter is what the CLI flag opens: the limit shows in the device's limits.
#[test]
fn the_binding_cap_lowers_the_devices_limits() {
    let gpu = byol_wgpu::gpu::Gpu::new(&AdapterChoice {
        max_binding_bytes: Some(100_000),
        ..AdapterChoice::from_env()
    })
    .unwrap();
    assert_eq!(gpu.limits.max_storage_buffer_binding_size, 99_840);
    assert!(gpu.limits.max_buffer_size <= 99_840);
}
