//! The executor as a whole: a training loop against the CPU reference's trajectory, memory
//! planning, no allocation after compilation, and in-place updates.

mod common;

use byol_wgpu::demo::{MlpRegression, MlpShape};
use byol_wgpu::graph::{CpuRunner, Executable, Graph};
use common::{assert_close, gpu, random};

#[test]
fn mlp_trained_with_sgd_follows_the_reference_trajectory() {
    let shape = MlpShape {
        batch: 64,
        inputs: 16,
        hidden: 32,
        outputs: 4,
    };
    let mlp = MlpRegression::build(shape, 0.05);
    let (init, x, target) = mlp.data(42);
    let exe = Executable::new(&gpu(), &mlp.graph, &[mlp.loss]).unwrap();
    let mut cpu = CpuRunner::new(&mlp.graph, &[mlp.loss]);
    for (p, v) in mlp.params.iter().zip(&init) {
        exe.write(*p, v).unwrap();
        cpu.set_param(*p, v);
    }
    let inputs = [(mlp.x, x.as_slice()), (mlp.target, target.as_slice())];
    let mut first = 0.0;
    let mut last = 0.0;
    for step in 0..50 {
        let got = exe.run(&inputs).unwrap()[0][0];
        let want = cpu.run(&inputs)[0].data[0];
        assert_close(&format!("loss at step {step}"), &[got], &[want], 1e-5, 1e-4);
        if step == 0 {
            first = want;
        }
        last = want;
    }
    assert!(
        last < 0.5 * first,
        "SGD should fit the problem: loss {first} -> {last}"
    );
    for &p in &mlp.params {
        assert_close(
            "parameter after 50 steps",
            &exe.read(p).unwrap(),
            &cpu.param(p).data,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn runs_allocate_nothing_after_compilation() {
    // A device of its own: its byte counter sees no other test's buffers.
    let gpu = byol_wgpu::gpu::Gpu::from_env().unwrap();
    let mlp = MlpRegression::build(
        MlpShape {
            batch: 32,
            inputs: 8,
            hidden: 16,
            outputs: 4,
        },
        0.01,
    );
    let exe = Executable::new(&gpu, &mlp.graph, &[mlp.loss]).unwrap();
    let (init, x, target) = mlp.data(1);
    for (p, v) in mlp.params.iter().zip(&init) {
        exe.write(*p, v).unwrap();
    }
    exe.run(&[(mlp.x, &x), (mlp.target, &target)]).unwrap();
    let before = gpu.allocated_bytes();
    for _ in 0..3 {
        exe.run(&[(mlp.x, &x), (mlp.target, &target)]).unwrap();
    }
    assert_eq!(gpu.allocated_bytes(), before);
}

/// Where the driver compiles a kernel at its first dispatch (lavapipe), building a plan runs
/// each op with a kernel new to the device once, on scratch buffers: the plan's constants and
/// parameters are untouched by those runs, and a second plan of the same kernels runs none.
#[test]
fn building_a_plan_compiles_its_new_kernels_on_scratch_buffers() {
    // A device of its own: no other test compiled these kernels on it.
    let gpu = byol_wgpu::gpu::Gpu::from_env().unwrap();
    let mut g = Graph::new();
    let w = g.param("w", &[4]);
    let c = g.constant(&[4], vec![1.0, 2.0, 3.0, 4.0]);
    let x = g.input("x", &[4]);
    let y = g.add(c, x);
    let y = g.relu(y);
    let z = g.add(y, x);
    g.sgd_update(w, c, 1.0);
    let exe = Executable::new(&gpu, &g, &[z]).unwrap();
    let again = Executable::new(&gpu, &g, &[z]).unwrap();
    // add, relu and sgd: the second add's kernel is the first's.
    let ahead = if gpu.compiles_at_first_dispatch() {
        3
    } else {
        0
    };
    assert_eq!(exe.ops_compiled_ahead(), ahead);
    assert_eq!(again.ops_compiled_ahead(), 0);
    exe.write(w, &[0.0; 4]).unwrap();
    let out = exe.run(&[(x, &[-2.0, -2.0, 0.0, 1.0])]).unwrap();
    assert_eq!(out[0], vec![-2.0, -2.0, 3.0, 6.0]);
    assert_eq!(exe.read(w).unwrap(), vec![-1.0, -2.0, -3.0, -4.0]);
}

#[test]
fn a_long_chain_reuses_buffers() {
    let mut g = Graph::new();
    let x = g.input("x", &[256]);
    let mut y = x;
    for i in 0..20 {
        y = if i % 2 == 0 {
            g.relu(y)
        } else {
            g.scale(y, 0.5)
        };
    }
    let exe = Executable::new(&gpu(), &g, &[y]).unwrap();
    // The input, the output and two buffers that alternate along the chain.
    assert!(
        exe.buffer_count() <= 4,
        "{} buffers for a chain",
        exe.buffer_count()
    );
    let xs = random(256, 5);
    let got = exe.run(&[(x, &xs)]).unwrap();
    let want: Vec<f64> = xs.iter().map(|&v| f64::from(v.max(0.0)) / 1024.0).collect();
    assert_close("chain", &got[0], &want, 1e-7, 1e-6);
}

#[test]
fn in_place_updates_change_parameters_and_only_parameters() {
    let mut g = Graph::new();
    let w = g.param("w", &[3]);
    let d = g.input("d", &[3]);
    g.sgd_update(w, d, 0.5);
    let exe = Executable::new(&gpu(), &g, &[]).unwrap();
    exe.write(w, &[1.0, 2.0, 3.0]).unwrap();
    exe.run(&[(d, &[2.0, 2.0, 2.0])]).unwrap();
    exe.run(&[(d, &[2.0, 0.0, -2.0])]).unwrap();
    assert_eq!(exe.read(w).unwrap(), vec![-1.0, 1.0, 3.0]);

    let mut bad = Graph::new();
    let i = bad.input("i", &[3]);
    let d = bad.input("d", &[3]);
    let err = bad
        .try_apply(byol_wgpu::ops::SgdUpdate { lr: 0.1 }, &[i, d])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a parameter"), "{err}");
}

#[test]
fn ema_update_moves_a_parameter_towards_its_input() {
    let mut g = Graph::new();
    let w = g.param("w", &[2]);
    let x = g.input("x", &[2]);
    g.apply(
        byol_wgpu::ops::EmaUpdate {
            decay: 0.9,
            scale: 2.0,
        },
        &[w, x],
    );
    let exe = Executable::new(&gpu(), &g, &[]).unwrap();
    exe.write(w, &[1.0, -1.0]).unwrap();
    exe.run(&[(x, &[10.0, 0.0])]).unwrap();
    // 0.9 w + 0.1 * 2 x
    assert_close("ema", &exe.read(w).unwrap(), &[2.9, -0.9], 1e-6, 1e-6);
}

#[test]
fn writing_the_wrong_length_is_an_error() {
    let mut g = Graph::new();
    let x = g.input("x", &[4]);
    let y = g.relu(x);
    let exe = Executable::new(&gpu(), &g, &[y]).unwrap();
    let err = exe.run(&[(x, &[1.0, 2.0])]).unwrap_err().to_string();
    assert!(err.contains("[4]") && err.contains("2 values"), "{err}");
    let err = exe.write(y, &[0.0; 4]).unwrap_err().to_string();
    assert!(err.contains("not an input or parameter"), "{err}");
}

#[test]
fn a_tensor_beyond_the_binding_limit_is_a_clear_error() {
    let gpu = gpu();
    let too_many = (gpu.limits.max_storage_buffer_binding_size / 4 + 1) as usize;
    let mut g = Graph::new();
    let x = g.input("x", &[too_many]);
    let y = g.relu(x);
    let err = Executable::new(&gpu, &g, &[y])
        .err()
        .expect("must not compile")
        .to_string();
    assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
}

/// The roofline's count of a graph's work: multiply-adds count 2, element-wise ops and
/// reductions one per element of their largest operand, and every op moves its inputs and
/// output once; ops nothing needs are left out.
#[test]
fn a_graphs_work_is_counted_per_op_family() {
    use byol_wgpu::ops::{Conv2d, SumAxis, Work};
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3, 8, 8]);
    let w = g.param("w", &[4, 3, 3, 3]);
    let y = g.apply(Conv2d { stride: 1, pad: 1 }, &[x, w]); // [2, 4, 8, 8]
    let r = g.relu(y);
    let s = g.apply(
        SumAxis {
            axis: 0,
            scale: 1.0,
        },
        &[r],
    ); // [4, 8, 8]
    let a = g.input("a", &[5, 7]);
    let b = g.input("b", &[6, 7]);
    let unused = g.matmul_t(a, b, false, true);
    let work = g.work(&[s]);
    let (conv_macs, act) = (2 * 4 * 8 * 8 * 3 * 3 * 3, 2 * 4 * 8 * 8);
    let bytes = |floats: usize| 4.0 * floats as f64;
    let want = vec![
        (
            "conv2d".to_string(),
            Work {
                flops: 2.0 * conv_macs as f64,
                bytes: bytes(2 * 3 * 8 * 8 + 4 * 3 * 3 * 3 + act),
            },
        ),
        (
            "relu".to_string(),
            Work {
                flops: act as f64,
                bytes: bytes(2 * act),
            },
        ),
        (
            "sum".to_string(),
            Work {
                flops: act as f64,
                bytes: bytes(act + act / 2),
            },
        ),
    ];
    assert_eq!(work, want);
    let with_matmul = g.work(&[s, unused]);
    assert_eq!(
        with_matmul.last().unwrap(),
        &(
            "matmul".to_string(),
            Work {
                flops: 2.0 * (5 * 6 * 7) as f64,
                bytes: bytes(5 * 7 + 6 * 7 + 5 * 6),
            }
        )
    );
}
