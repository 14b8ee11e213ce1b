//! L-BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking Armijo line search: the solver
//! that takes a smooth convex objective, such as the linear probe's regularised cross-entropy,
//! to its optimum in a few hundred gradient evaluations.

use std::collections::VecDeque;

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stopping {
    /// Stop once every gradient component is at most this.
    pub gradient: f64,
    /// Stop once an iteration lowers the objective by less than this, relative to it.
    pub relative_decrease: f64,
    pub max_iterations: usize,
}

impl Default for Stopping {
    fn default() -> Self {
        Self {
            gradient: 1e-5,
            relative_decrease: 1e-10,
            max_iterations: 1000,
        }
    }
}

/// How a minimisation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub iterations: usize,
    pub evaluations: usize,
    pub objective: f64,
    /// The largest gradient component at the end.
    pub gradient: f64,
    /// The gradient or decrease criterion was met (not the iteration cap).
    pub converged: bool,
}

/// Curvature pairs kept.
const MEMORY: usize = 10;
/// Armijo's sufficient-decrease constant.
const ARMIJO: f64 = 1e-4;
const MAX_HALVINGS: usize = 50;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimises `f` from `x`, in place. `f(x, grad)` returns the objective and writes its gradient.
pub fn minimize(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x: &mut [f64],
    stop: &Stopping,
) -> Outcome {
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut fx = f(x, &mut g);
    let mut evaluations = 1;
    // (s, y, 1 / y.s) of the last MEMORY steps.
    let mut pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(MEMORY);
    let (mut x_new, mut g_new) = (vec![0.0; n], vec![0.0; n]);
    let mut iterations = 0;
    let mut converged = max_abs(&g) <= stop.gradient;
    while !converged && iterations < stop.max_iterations {
        let mut d = two_loop(&g, &pairs);
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            pairs.clear();
            d = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        // The first step has no curvature to scale it: move by at most 1 in the largest
        // component.
        let mut t = if pairs.is_empty() {
            1.0f64.min(1.0 / max_abs(&d).max(1e-300))
        } else {
            1.0
        };
        let mut f_new;
        let mut halvings = 0;
        loop {
            for i in 0..n {
                x_new[i] = x[i] + t * d[i];
            }
            f_new = f(&x_new, &mut g_new);
            evaluations += 1;
            if f_new <= fx + ARMIJO * t * slope || halvings == MAX_HALVINGS {
                break;
            }
            t *= 0.5;
            halvings += 1;
        }
        if f_new > fx {
            // No decrease even at the smallest step: the objective is flat to rounding here.
            converged = true;
            break;
        }
        let s: Vec<f64> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if pairs.len() == MEMORY {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        let decrease = fx - f_new;
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        fx = f_new;
        iterations += 1;
        converged = max_abs(&g) <= stop.gradient
            || decrease <= stop.relative_decrease * fx.abs().max(1e-300);
    }
    Outcome {
        iterations,
        evaluations,
        objective: fx,
        gradient: max_abs(&g),
        converged,
    }
}

/// -H g for the inverse-Hessian approximation the pairs define, scaled by the newest pair.
fn two_loop(g: &[f64], pairs: &VecDeque<(Vec<f64>, Vec<f64>, f64)>) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(pairs.len());
    for (s, y, rho) in pairs.iter().rev() {
        let a = rho * dot(s, &q);
        q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
        alphas.push(a);
    }
    if let Some((s, y, _)) = pairs.back() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}
