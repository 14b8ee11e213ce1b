//! The ops behind the training metrics and gradient accumulation, on the GPU against the CPU
//! reference, and phases and non-blocking readback in the executor.

mod common;

use byol_wgpu::graph::{CpuRunner, Executable, Graph};
use byol_wgpu::ops::{Accumulate, ColumnStdMean, SquaredNorms};
use common::{assert_close, gpu, random};

#[test]
fn column_std_mean_and_squared_norms_match_the_reference() {
    let mut g = Graph::new();
    let x = g.input("x", &[37, 300]);
    let w = g.input("w", &[1000]);
    let grad = g.input("g", &[1000]);
    let std = g.apply(ColumnStdMean, &[x]);
    let norms = g.apply(SquaredNorms { weight_decay: 0.1 }, &[w, grad]);
    let exe = Executable::new(&gpu(), &g, &[std, norms]).unwrap();
    let mut cpu = CpuRunner::new(&g, &[std, norms]);
    let (xv, wv, gv) = (random(37 * 300, 1), random(1000, 2), random(1000, 3));
    let feeds = [(x, &xv[..]), (w, &wv[..]), (grad, &gv[..])];
    let got = exe.run(&feeds).unwrap();
    let want = cpu.run(&feeds);
    assert_close("column std", &got[0], &want[0].data, 1e-6, 1e-5);
    assert_close("norms", &got[1], &want[1].data, 1e-4, 1e-5);
    // Uniform on [-1, 1): std 1/sqrt(3) per column.
    assert!((got[0][0] - 0.577).abs() < 0.03, "{}", got[0][0]);
}

#[test]
fn accumulation_over_phases_with_deferred_readback() {
    // Phase 0 adds x / 3 into acc; phase 1 copies acc into out and clears acc.
    let mut g = Graph::new();
    let x = g.input("x", &[500]);
    let acc = g.param("acc", &[500]);
    let out = g.param("out", &[500]);
    let sum = g.sum(x, 0);
    g.apply(
        Accumulate {
            a: 1.0,
            b: 1.0 / 3.0,
        },
        &[acc, x],
    );
    g.start_phase();
    g.apply(Accumulate { a: 0.0, b: 1.0 }, &[out, acc]);
    g.apply(Accumulate { a: 0.0, b: 0.0 }, &[acc, acc]);
    let exe = Executable::new(&gpu(), &g, &[sum]).unwrap();
    assert_eq!(exe.phase_count(), 2);
    exe.write(acc, &vec![0.0; 500]).unwrap();
    exe.write(out, &vec![0.0; 500]).unwrap();

    let xs: Vec<Vec<f32>> = (0..3).map(|i| random(500, 10 + i)).collect();
    let mut pending = Vec::new();
    for (i, xv) in xs.iter().enumerate() {
        exe.write(x, xv).unwrap();
        let phases = if i == 2 { 0..2 } else { 0..1 };
        pending.push(exe.submit(&[], phases).unwrap());
    }
    // All three runs were in flight at once; collect in order.
    for (p, xv) in pending.into_iter().zip(&xs) {
        let got = exe.collect(p).unwrap();
        let want: f64 = xv.iter().map(|&v| f64::from(v)).sum();
        assert_close("sum", &got[0], &[want], 1e-4, 1e-5);
    }
    let mean: Vec<f64> = (0..500)
        .map(|i| xs.iter().map(|v| f64::from(v[i])).sum::<f64>() / 3.0)
        .collect();
    assert_close(
        "accumulated mean",
        &exe.read(out).unwrap(),
        &mean,
        1e-6,
        1e-5,
    );
    assert!(exe.read(acc).unwrap().iter().all(|&v| v == 0.0), "cleared");
}

#[test]
fn a_fourth_run_in_flight_is_refused() {
    let mut g = Graph::new();
    let x = g.input("x", &[4]);
    let y = g.sum(x, 0);
    let exe = Executable::new(&gpu(), &g, &[y]).unwrap();
    exe.write(x, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let held: Vec<_> = (0..3).map(|_| exe.submit(&[], 0..1).unwrap()).collect();
    let err = exe.submit(&[], 0..1).err().unwrap().to_string();
    assert!(err.contains("collect"), "{err}");
    for p in held {
        assert_eq!(exe.collect(p).unwrap()[0], vec![10.0]);
    }
    assert_eq!(exe.run(&[]).unwrap()[0], vec![10.0]);
}
