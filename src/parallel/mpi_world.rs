//! MPI's world communicator behind `Group` (feature `mpi`).

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use crate::{Error, Result};

/// The initialised MPI library (finalised when dropped) and its world communicator.
pub struct World {
    /// Every call goes through this lock: MPI is initialised for serialised calls from any
    /// thread, and the communicator is a handle MPI shares between threads.
    comm: Mutex<SimpleCommunicator>,
    _universe: Universe,
}

// SAFETY: the communicator is only used under the mutex, and MPI was initialised with
// `Threading::Serialized` (checked in `init`), which allows calls from any thread one at a time.
unsafe impl Send for World {}
unsafe impl Sync for World {}

impl World {
    /// Initialises MPI: the world, this process's rank and size, and its rank among the
    /// processes that share its machine.
    pub fn init() -> Result<(Self, usize, usize, usize)> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::Config("MPI was initialised twice".into()))?;
        if threading < Threading::Serialized {
            return Err(Error::Config(format!(
                "this MPI library offers {threading:?} threading; byol needs Serialized"
            )));
        }
        let comm = universe.world();
        let rank = comm.rank() as usize;
        let size = comm.size() as usize;
        let local_rank = comm.split_shared(comm.rank()).rank() as usize;
        Ok((
            Self {
                comm: Mutex::new(comm),
                _universe: universe,
            },
            rank,
            size,
            local_rank,
        ))
    }

    fn comm(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
        self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sum<T: Equivalence + Copy>(&self, values: &mut [T]) {
        let send = values.to_vec();
        self.comm()
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    pub fn max(&self, value: u64) -> u64 {
        let mut out = 0u64;
        self.comm()
            .all_reduce_into(&value, &mut out, SystemOperation::max());
        out
    }

    pub fn broadcast(&self, values: &mut [f32]) {
        self.comm().process_at_rank(0).broadcast_into(values);
    }

    pub fn barrier(&self) {
        self.comm().barrier();
    }

    pub fn abort(&self, code: u8) -> ! {
        self.comm().abort(code.into())
    }
}
