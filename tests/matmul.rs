//! Every matmul kernel, in all four transpositions, against the f64 reference, on shapes
//! that are and are not multiples of their tiles.

mod common;

use byol_wgpu::ops::{HostTensor, MatMul, MatmulKernel, Op};
use common::{assert_close, gpu, random};

/// Runs the product with `kernel`, checks it against the reference and returns it.
fn check(kernel: MatmulKernel, (m, n, k): (usize, usize, usize), ta: bool, tb: bool) -> Vec<f32> {
    let gpu = gpu();
    let a_shape = if ta { [k, m] } else { [m, k] };
    let b_shape = if tb { [n, k] } else { [k, n] };
    let a = random(m * k, 1);
    let b = random(k * n, 2);
    let (ab, bb, cb) = (
        gpu.storage_buffer("a", (m * k * 4) as u64).unwrap(),
        gpu.storage_buffer("b", (k * n * 4) as u64).unwrap(),
        gpu.storage_buffer("c", (m * n * 4) as u64).unwrap(),
    );
    gpu.write_f32(&ab, &a);
    gpu.write_f32(&bb, &b);
    let d = kernel
        .dispatch(&gpu, (&ab, &bb, &cb), (m, n, k), ta, tb)
        .unwrap();
    gpu.run(&[d]).unwrap();
    let got = gpu.read_f32(&cb, m * n).unwrap();
    let want = MatMul::new(ta, tb).reference(&[
        &HostTensor::from_f32(&a_shape, &a),
        &HostTensor::from_f32(&b_shape, &b),
    ]);
    let what = format!("{kernel:?} {m}x{n}x{k} ta={ta} tb={tb}");
    // Sums of k products of values in [-1, 1]: the f32 rounding grows like sqrt(k).
    assert_close(&what, &got, &want.data, 1e-5 * (k as f64).sqrt(), 1e-5);
    got
}

/// `check` at each shape in every transposition the kernel supports; a kernel the adapter
/// cannot run is skipped, saying so.
fn check_every_form(kernel: MatmulKernel, shapes: &[(usize, usize, usize)]) {
    if !kernel.available(&gpu()) {
        eprintln!("skipped: this adapter cannot run {kernel:?}");
        return;
    }
    for &(m, n, k) in shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            if kernel.supports(m, n, k, ta) {
                check(kernel, (m, n, k), ta, tb);
            }
        }
    }
}

#[test]
fn tiled_kernel_matches_the_reference() {
    let shapes = [
        (1, 1, 1),
        (37, 29, 53),
        (65, 130, 17),
        (128, 64, 256),
        (3, 200, 70),
    ];
    check_every_form(MatmulKernel::Tiled, &shapes);
}

/// Shapes across the 128x128 tile's edges and K not a multiple of its 8-deep steps (the last
/// step of the double buffer partly past K), K of one step, and K of many.
#[test]
fn large_tiled_kernel_matches_the_reference() {
    let shapes = [
        (1, 1, 1),
        (37, 29, 53),
        (129, 130, 17),
        (128, 128, 8),
        (256, 64, 200),
        (3, 260, 70),
        (200, 127, 9),
    ];
    check_every_form(MatmulKernel::TiledLarge, &shapes);
}

#[test]
fn vec4_kernel_matches_the_reference() {
    let shapes = [
        (4, 4, 4),
        (36, 44, 20),
        (8, 128, 4),
        (72, 260, 36),
        (128, 128, 128),
        (1, 8, 8),
    ];
    check_every_form(MatmulKernel::Vec4, &shapes);
}

#[test]
fn subgroup_kernel_matches_the_reference() {
    let shapes = [
        (4, 4, 4),
        (36, 44, 20),
        (72, 260, 36),
        (130, 128, 64),
        (256, 132, 8),
    ];
    check_every_form(MatmulKernel::Subgroup, &shapes);
}

/// Shapes across the 16-row tile's edges and its 8 x subgroup-size columns, one step of K and
/// many; A is never transposed for it.
#[test]
fn in_order_subgroup_kernel_matches_the_reference() {
    let kernel = MatmulKernel::SubgroupInOrder;
    assert!(!kernel.supports(16, 16, 16, true), "a transposed A");
    let shapes = [
        (4, 4, 4),
        (17, 68, 20),
        (33, 260, 36),
        (130, 128, 64),
        (16, 132, 8),
    ];
    check_every_form(kernel, &shapes);
}

#[test]
fn vec4_kernel_refuses_unaligned_shapes() {
    assert!(!MatmulKernel::Vec4.supports(8, 8, 6, false));
    assert!(!MatmulKernel::Vec4.supports(8, 6, 8, false));
    assert!(!MatmulKernel::Vec4.supports(6, 8, 8, true));
    assert!(MatmulKernel::Vec4.supports(6, 8, 8, false));
}

/// Every matmul of the BYOL step of the tiny, quick and small presets at their batch sizes
/// (the heads, their gradients, the online probe), read off the step's graph, on every kernel
/// that supports it, the adapter's own choice first; and a seeded sweep of sizes across the
/// tile edges and the multiples of 4 the vector kernels need.
#[test]
fn every_matmul_of_the_presets_steps_and_a_seeded_sweep() {
    use byol_wgpu::byol::{ByolStep, StepOptions};
    use byol_wgpu::train::TrainConfig;
    use rand::{Rng, SeedableRng};

    let gpu = gpu();
    let kernels: Vec<MatmulKernel> = [
        MatmulKernel::Tiled,
        MatmulKernel::TiledLarge,
        MatmulKernel::Vec4,
        MatmulKernel::Subgroup,
        MatmulKernel::SubgroupInOrder,
    ]
    .into_iter()
    .filter(|k| k.available(&gpu))
    .collect();
    let mut shapes: Vec<((usize, usize, usize), bool, bool)> = Vec::new();
    for (preset, channels, side) in [("tiny", 1, 28), ("quick", 1, 28), ("small", 3, 32)] {
        let config = TrainConfig::preset(preset).unwrap();
        let options = StepOptions {
            accumulate: 1,
            probe_classes: Some(10),
        };
        let step = ByolStep::build(
            &config.nets(channels).unwrap(),
            config.batch,
            [channels, side, side],
            &config.lars(),
            options,
        )
        .unwrap();
        let g = &step.graph;
        for t in g.ids() {
            let node = g.node(t);
            let Some(flags) = node.name.strip_prefix("matmul(ta=") else {
                continue;
            };
            let (ta, tb) = flags.trim_end_matches(')').split_once(", tb=").unwrap();
            let (ta, tb): (bool, bool) = (ta.parse().unwrap(), tb.parse().unwrap());
            let (a, b) = (g.shape(node.inputs()[0]), g.shape(node.inputs()[1]));
            let (m, k) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
            let n = if tb { b[0] } else { b[1] };
            let shape = ((m, n, k), ta, tb);
            if !shapes.contains(&shape) {
                shapes.push(shape);
            }
        }
    }
    assert!(shapes.len() >= 12, "{} matmul shapes", shapes.len());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    for _ in 0..24 {
        let mut dim =
            || [rng.random_range(1..=80), 4 * rng.random_range(1..=40)][rng.random_range(0..2)];
        let (m, n, k) = (dim(), dim(), dim());
        let (ta, tb) = (rng.random_bool(0.5), rng.random_bool(0.5));
        shapes.push(((m, n, k), ta, tb));
    }
    for ((m, n, k), ta, tb) in shapes {
        let chosen = MatmulKernel::choose(&gpu, m, n, k, ta);
        let mut tiled_outputs = Vec::new();
        let mut run = |kernel, m| {
            let got = check(kernel, (m, n, k), ta, tb);
            use MatmulKernel::{SubgroupInOrder, Tiled, TiledLarge};
            if matches!(kernel, Tiled | TiledLarge | SubgroupInOrder) {
                tiled_outputs.push((kernel, m, got));
            }
        };
        run(chosen, m);
        for &other in kernels.iter().filter(|&&o| o != chosen) {
            // The tiled kernels are slow on software adapters: they take the large shapes at
            // a quarter of the rows (their code path does not depend on M).
            let tiled = matches!(other, MatmulKernel::Tiled | MatmulKernel::TiledLarge);
            let m = if tiled && m * n * k > 1 << 24 {
                m.div_ceil(4)
            } else {
                m
            };
            if other.supports(m, n, k, ta) {
                run(other, m);
            }
        }
        // The candidates hardware GPUs time (`MatmulKernel::candidates`, `fastest`) compute
        // the same bits, whichever wins: compared where they ran the same rows.
        for (kernel, m1, got) in &tiled_outputs {
            for (other, _, want) in tiled_outputs.iter().filter(|(_, m2, _)| m1 == m2) {
                assert!(
                    got == want,
                    "{kernel:?} and {other:?} differ at {m1}x{n}x{k} ta={ta} tb={tb}"
                );
            }
        }
    }
}

/// With tuning on, the device times the candidates of a product once and keeps the winner,
/// one of them; with it off, the first candidate runs untimed.
#[test]
fn tuning_times_each_product_once() {
    use byol_wgpu::gpu::Gpu;

    let gpu = Gpu::from_env().unwrap();
    let candidates = [MatmulKernel::Tiled, MatmulKernel::TiledLarge];
    let (m, n, k) = (37, 130, 53);
    let buffer = |len: usize| gpu.storage_buffer("operand", (len * 4) as u64).unwrap();
    let (a, b, c) = (buffer(m * k), buffer(k * n), buffer(m * n));
    let choose = |ta| MatmulKernel::fastest(&gpu, &candidates, (&a, &b, &c), (m, n, k), ta, false);
    gpu.set_kernel_tuning(false);
    assert_eq!(choose(false).unwrap(), MatmulKernel::Tiled);
    assert_eq!(gpu.tuned_problems(), 0);
    gpu.set_kernel_tuning(true);
    let chosen = choose(false).unwrap();
    assert!(candidates.contains(&chosen));
    assert_eq!(gpu.tuned_problems(), 1);
    assert_eq!(choose(false).unwrap(), chosen);
    assert_eq!(gpu.tuned_problems(), 1, "timed again");
    choose(true).unwrap();
    assert_eq!(
        gpu.tuned_problems(),
        2,
        "another transposition is another problem"
    );
}

/// A candidate that cannot launch (past an adapter limit, say) drops out of the timing; the
/// first, which runs untimed when tuning is off, must launch.
#[test]
fn tuning_skips_a_candidate_that_cannot_launch() {
    use byol_wgpu::gpu::Gpu;
    use byol_wgpu::Error;

    let gpu = Gpu::from_env().unwrap();
    gpu.set_kernel_tuning(true);
    let (m, n, k) = (37, 130, 53);
    let sizes = [m * k, k * n, m * n].map(|len| (len * 4) as u64);
    let launch = |kernel, s: &[wgpu::Buffer]| {
        if kernel == MatmulKernel::TiledLarge {
            return Err(Error::Gpu("refused".into()));
        }
        let d =
            MatmulKernel::dispatch(kernel, &gpu, (&s[0], &s[1], &s[2]), (m, n, k), false, false);
        Ok(vec![d?])
    };
    let both = [MatmulKernel::Tiled, MatmulKernel::TiledLarge];
    assert_eq!(
        gpu.fastest("skips", &both, &sizes, launch).unwrap(),
        MatmulKernel::Tiled
    );
    let reversed = [MatmulKernel::TiledLarge, MatmulKernel::Tiled];
    assert!(gpu
        .fastest("first fails", &reversed, &sizes, launch)
        .is_err());
}
