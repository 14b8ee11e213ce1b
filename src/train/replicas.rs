//! Keeping the replicas of a data-parallel run identical. At the start every rank takes rank
//! 0's parameters; between the step's phases the ranks sum their gradient accumulators (each
//! already divided by the step's total number of micro-batches), combine their batch-norm
//! running statistics into what the micro-batches would have left one after another, and sum
//! what the step reports. Phase 1 (LARS, EMA) then runs on equal inputs on every rank.

use std::sync::Arc;

use crate::byol::ByolStep;
use crate::graph::{Executable, TensorId};
use crate::parallel::Group;
use crate::{Error, Result};

use super::checkpoint::TrainState;
use super::trainer::Requests;

/// The step's scalars in the small sum: loss, probe counts, collapse, three requests.
const SCALARS: usize = 7;

pub struct Replicas {
    pub group: Arc<Group>,
    running: Vec<TensorId>,
    /// Per running statistic: its length and the factor one micro-batch scales its old value by.
    decays: Vec<(usize, f64)>,
    /// The running statistics at the start of the step, equal on every rank, flat.
    running_before: Vec<f32>,
}

/// What one rank's micro-batches of a step add up to, and what it asks of the step's end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepSums {
    pub loss: f64,
    pub probe_correct: f64,
    pub probe_seen: f64,
    /// The collapse monitor of the step's last micro-batch (the last rank's).
    pub collapse_std: f64,
    /// Any rank's save or stop; a checkpoint due by time on rank 0's clock.
    pub requests: Requests,
}

impl Replicas {
    /// The replicas of `step` on the processes of `group`.
    pub fn new(group: Arc<Group>, step: &ByolStep) -> Self {
        Self {
            group,
            running: step.running_stats.iter().map(|&(t, _)| t).collect(),
            decays: step
                .running_stats
                .iter()
                .map(|&(t, d)| (step.graph.shape(t).iter().product(), d))
                .collect(),
            running_before: Vec::new(),
        }
    }

    /// Gives every rank rank 0's parameters, once they are initialised or loaded. Fails when
    /// the ranks resumed different steps (a run directory that differs between machines).
    pub fn agree(&mut self, exe: &Executable, step: &ByolStep, state: &TrainState) -> Result<()> {
        if self.group.size() == 1 {
            return Ok(());
        }
        let g = &self.group;
        for (what, own) in [
            ("step", state.step),
            ("epoch", state.epoch),
            ("epoch position", state.position as u64),
        ] {
            let highest = g.max(own);
            if highest != own {
                return Err(Error::Training(format!(
                    "{} starts at {what} {own}, another rank at {highest}: every rank must see the same run directory",
                    g.describe()
                )));
            }
        }
        let ids: Vec<TensorId> = step.params.iter().map(|p| p.id).collect();
        let mut values = exe.read_flat(&ids)?;
        g.broadcast_f32(&mut values);
        exe.write_flat(&ids, &values)?;
        self.running_before = exe.read_flat(&self.running)?;
        Ok(())
    }

    /// Between the phases of a step in which this rank trained `micro_batches` micro-batches:
    /// sums the gradient accumulators over the ranks and sets the running statistics to what
    /// the ranks' micro-batches, taken in rank order, would have left; returns the sums of
    /// every rank's `own`.
    pub fn synchronise(
        &mut self,
        exe: &Executable,
        step: &ByolStep,
        micro_batches: usize,
        own: StepSums,
    ) -> Result<StepSums> {
        let (rank, size) = (self.group.rank(), self.group.size());
        let last = rank + 1 == size;
        let flag = |b: bool| f64::from(u8::from(b));
        // SCALARS sums first, then one per running-statistic value.
        let mut small = vec![
            own.loss,
            own.probe_correct,
            own.probe_seen,
            if last { own.collapse_std } else { 0.0 },
            flag(own.requests.save),
            flag(own.requests.stop),
            if self.group.is_root() {
                flag(own.requests.due_by_time)
            } else {
                0.0
            },
        ];
        // A micro-batch maps a running statistic r to D r + e; this rank's micro-batches took
        // r0 to D^m r0 + e_rank. In rank order the ranks' micro-batches leave
        // D^(m size) r0 + sum over ranks of D^(m (size - 1 - rank)) e_rank.
        // One readback for both: the running statistics, then the accumulators.
        let tensors: Vec<TensorId> = self
            .running
            .iter()
            .chain(&step.accumulators)
            .copied()
            .collect();
        let mut flat = exe.read_flat(&tensors)?;
        let (now, grads) = flat.split_at_mut(self.running_before.len());
        let mut start = 0;
        for &(len, d) in &self.decays {
            let local = d.powi(micro_batches as i32);
            let later = local.powi((size - 1 - rank) as i32);
            let range = start..start + len;
            for (r, r0) in now[range.clone()].iter().zip(&self.running_before[range]) {
                small.push(later * (f64::from(*r) - local * f64::from(*r0)));
            }
            start += len;
        }
        self.group.sum_f64(&mut small);
        self.group.sum_f32(grads);
        exe.write_flat(&step.accumulators, grads)?;

        let mut start = 0;
        for &(len, d) in &self.decays {
            let all = d.powi((micro_batches * size) as i32);
            let range = start..start + len;
            let sums = &small[SCALARS + start..SCALARS + start + len];
            for (r0, sum) in self.running_before[range].iter_mut().zip(sums) {
                *r0 = (all * f64::from(*r0) + sum) as f32;
            }
            start += len;
        }
        exe.write_flat(&self.running, &self.running_before)?;
        Ok(StepSums {
            loss: small[0],
            probe_correct: small[1],
            probe_seen: small[2],
            collapse_std: small[3],
            requests: Requests {
                save: small[4] > 0.0,
                stop: small[5] > 0.0,
                due_by_time: small[6] > 0.0,
            },
        })
    }
}
