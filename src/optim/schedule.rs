//! Schedules over optimiser steps (not micro-batches): the learning rate's linear warm-up then
//! cosine decay to zero, and BYOL's tau rising from tau_base to 1.

use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    pub base: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// Linear from 0 over the warm-up, then base (1 + cos(pi t)) / 2 with t the fraction of
    /// the remaining steps done.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base * step as f64 / self.warmup_steps as f64;
        }
        let rest = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / rest as f64).min(1.0);
        self.base * (1.0 + (PI * t).cos()) / 2.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TauSchedule {
    pub base: f64,
    pub total_steps: u64,
}

impl TauSchedule {
    /// tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2.
    pub fn at(&self, step: u64) -> f64 {
        let k = (step as f64 / self.total_steps.max(1) as f64).min(1.0);
        1.0 - (1.0 - self.base) * ((PI * k).cos() + 1.0) / 2.0
    }
}
