//! The learning-rate and tau schedules against their formulas at the points that matter.

use byol_wgpu::optim::{LrSchedule, TauSchedule};

#[test]
fn learning_rate_warms_up_linearly_then_decays_to_zero_by_cosine() {
    let s = LrSchedule {
        base: 0.4,
        warmup_steps: 10,
        total_steps: 110,
    };
    assert_eq!(s.at(0), 0.0);
    assert!((s.at(5) - 0.2).abs() < 1e-12);
    assert!((s.at(10) - 0.4).abs() < 1e-12);
    assert!(
        (s.at(60) - 0.2).abs() < 1e-12,
        "half way through the cosine"
    );
    assert!(s.at(110).abs() < 1e-12);
    assert!(s.at(200).abs() < 1e-12, "stays at zero past the end");
    let no_warmup = LrSchedule {
        base: 1.0,
        warmup_steps: 0,
        total_steps: 4,
    };
    assert!((no_warmup.at(1) - (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0).abs() < 1e-12);
}

#[test]
fn tau_rises_from_its_base_to_one() {
    let s = TauSchedule {
        base: 0.996,
        total_steps: 100,
    };
    assert!((s.at(0) - 0.996).abs() < 1e-12);
    assert!((s.at(50) - 0.998).abs() < 1e-12);
    assert!((s.at(100) - 1.0).abs() < 1e-12);
    assert!(
        (s.at(1) - (1.0 - 0.004 * ((std::f64::consts::PI / 100.0).cos() + 1.0) / 2.0)).abs()
            < 1e-15
    );
}
