//! The processes that train one run together, one per device (data parallelism): who this
//! process is among them and the collectives a step needs. Started by an MPI launcher
//! (`mpirun -np N byol ...`) in a build with the `mpi` feature, the group is MPI's world;
//! otherwise it is this process alone and every collective leaves its input as it is.

#[cfg(feature = "mpi")]
mod mpi_world;

use crate::Result;

/// This process's place among the processes of a run, and their collectives. Every process
/// must call the collectives in the same order with buffers of the same length.
pub struct Group {
    rank: usize,
    size: usize,
    local_rank: usize,
    /// The machine's name as MPI knows it (empty alone).
    host: String,
    #[cfg(feature = "mpi")]
    world: Option<mpi_world::World>,
}

/// The number of processes an MPI launcher started, from the variable it sets in each of
/// them: Open MPI's, then MPICH's (Hydra), then PMIx's (Slurm's srun among others).
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// The launcher variable this process was started with and its value, if any.
fn launcher_var() -> Option<(&'static str, String)> {
    LAUNCHER_VARS
        .iter()
        .find_map(|&k| std::env::var(k).ok().map(|v| (k, v)))
}

impl Group {
    /// This process alone.
    pub fn alone() -> Self {
        Self {
            rank: 0,
            size: 1,
            local_rank: 0,
            host: String::new(),
            #[cfg(feature = "mpi")]
            world: None,
        }
    }

    /// The group an MPI launcher started this process in, or this process alone when no
    /// launcher started it. Started by one in a build without MPI, it is an error: N copies of
    /// one run would otherwise write the same directory.
    pub fn from_launcher() -> Result<Self> {
        let Some((var, value)) = launcher_var() else {
            return Ok(Self::alone());
        };
        #[cfg(feature = "mpi")]
        {
            let _ = (var, value);
            mpi_world::World::init().map(|(world, rank, size, local_rank)| Self {
                rank,
                size,
                local_rank,
                host: mpi::environment::processor_name().unwrap_or_default(),
                world: Some(world),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            if value.trim() == "1" {
                return Ok(Self::alone());
            }
            Err(crate::Error::Config(format!(
                "started by an MPI launcher ({var}={value}) but this build has no MPI: rebuild with `cargo build --release --features mpi`"
            )))
        }
    }

    /// This process's number in the group, 0 to size - 1.
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Rank 0 writes the run's files and speaks for the group.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// This process's number among the group's processes on the same machine: which of the
    /// machine's devices it takes.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// The machine this process runs on, as MPI names it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Replaces `values` with their element-wise sum over the group.
    pub fn sum_f32(&self, values: &mut [f32]) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.sum(values);
        }
        #[cfg(not(feature = "mpi"))]
        let _ = values;
    }

    /// Replaces `values` with their element-wise sum over the group.
    pub fn sum_f64(&self, values: &mut [f64]) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.sum(values);
        }
        #[cfg(not(feature = "mpi"))]
        let _ = values;
    }

    /// The largest of every process's `value`.
    pub fn max(&self, value: u64) -> u64 {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return w.max(value);
        }
        value
    }

    /// Replaces `values` with rank 0's.
    pub fn broadcast_f32(&self, values: &mut [f32]) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.broadcast(values);
        }
        #[cfg(not(feature = "mpi"))]
        let _ = values;
    }

    /// Waits until every process has come here.
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.barrier();
        }
    }

    /// Ends this process with `code` and, in a group, every other one with it: a process
    /// that fails must not leave the others waiting in a collective.
    pub fn abort(&self, code: u8) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.abort(code);
        }
        std::process::exit(code.into())
    }

    /// "rank R of N", for messages from a group of more than one process.
    pub fn describe(&self) -> String {
        format!("rank {} of {}", self.rank, self.size)
    }
}
