//! The device: adapter choice, limits, buffers (counted), pipelines (cached), dispatches,
//! readback, and the kernel choices it times (`tune`).

mod adapter;
mod kernels;
mod tune;

pub use adapter::{describe, enumerate, select, slowness, AdapterChoice};
pub use kernels::{shader_source, KernelKey, ShaderSource, SHADERS};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::{Error, Result};

/// Invocations per workgroup of the one-dimensional kernels (elementwise, reduce).
pub const WORKGROUP_1D: u32 = 256;

/// An open device on the chosen adapter, shared by everything that runs kernels.
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pipelines: kernels::PipelineCache,
    allocated_bytes: AtomicU64,
    /// Pipelines whose code is compiled, or claimed by a warm-up that compiles it.
    compiled: Mutex<HashSet<wgpu::ComputePipeline>>,
    /// More devices on the same adapter, opened on first use, that compile pipelines beside
    /// this one (see `graph::warm_up`).
    siblings: OnceLock<Vec<Arc<Gpu>>>,
    /// Whether kernel choices are timed (see `tune`), and the choices made.
    tuning: AtomicBool,
    choices: tune::Choices,
}

/// At most this many devices compile a plan's pipelines at once: the quick step's three
/// largest GEMMs take most of the time, so more would wait on them.
const COMPILING_DEVICES: usize = 4;

/// One recorded kernel launch: everything it needs was created ahead of time.
#[derive(Clone)]
pub struct Dispatch {
    /// shader::entry, for profiles.
    pub label: Arc<str>,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

impl Gpu {
    /// Opens the adapter `choice` selects, with its own limits and the optional features it has.
    pub fn new(choice: &AdapterChoice) -> Result<Arc<Gpu>> {
        let adapter = select(choice)?;
        let info = adapter.get_info();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let mut limits = adapter.limits();
        if let Some(cap) = choice.max_binding_bytes {
            // A multiple of the 256-byte offset alignment, as adapters report their own.
            let cap = (cap / 256 * 256).max(256);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
        }
        let features = adapter.features() & wanted;
        let tuning = choice
            .tune_kernels
            .unwrap_or(info.device_type != wgpu::DeviceType::Cpu);
        let choices = tune::Choices::default();
        Ok(Arc::new(Self::open(
            adapter, info, limits, features, tuning, choices,
        )?))
    }

    fn open(
        adapter: wgpu::Adapter,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        features: wgpu::Features,
        tuning: bool,
        choices: tune::Choices,
    ) -> Result<Gpu> {
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("byol"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Gpu {
            features: device.features(),
            adapter,
            device,
            queue,
            info,
            limits,
            pipelines: Default::default(),
            allocated_bytes: AtomicU64::new(0),
            compiled: Default::default(),
            siblings: OnceLock::new(),
            tuning: AtomicBool::new(tuning),
            choices,
        })
    }

    /// Whether the driver compiles a pipeline's code at its first dispatch, on the thread that
    /// runs the queue, rather than when the pipeline is created: software adapters (lavapipe).
    pub fn compiles_at_first_dispatch(&self) -> bool {
        self.is_cpu()
    }

    /// Devices on the same adapter with the same limits and features that compile pipelines
    /// for this one: one per core beyond the first up to `COMPILING_DEVICES` in all, fewer where
    /// the adapter opens no more, none where Mesa's shader cache, through which what they
    /// compile reaches this device, is off: there their work is lost (lavapipe, 2026-12-05, the
    /// quick step's first step with the cache off: 31 and 37 s alone, 36 and 38 s with one).
    pub fn siblings(&self) -> &[Arc<Gpu>] {
        self.siblings.get_or_init(|| {
            let cache_off = std::env::var("MESA_SHADER_CACHE_DISABLE")
                .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
            let cores = if cache_off {
                1
            } else {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            };
            (1..cores.min(COMPILING_DEVICES))
                .map_while(|_| {
                    let (adapter, info) = (self.adapter.clone(), self.info.clone());
                    let limits = self.limits.clone();
                    let tuning = self.tunes_kernels();
                    let choices = self.choices.clone();
                    Self::open(adapter, info, limits, self.features, tuning, choices).ok()
                })
                .map(Arc::new)
                .collect()
        })
    }

    /// Whether any of `dispatches` has a pipeline not compiled yet; marks them all compiled,
    /// so the caller must see to it that they are.
    pub fn claim_uncompiled(&self, dispatches: &[Dispatch]) -> bool {
        let mut compiled = self.compiled.lock().unwrap();
        let mut any_new = false;
        for d in dispatches {
            any_new |= compiled.insert(d.pipeline.clone());
        }
        any_new
    }

    /// The adapter chosen by `BYOL_BACKEND` / `BYOL_ADAPTER`, as the CLI and the tests use it.
    pub fn from_env() -> Result<Arc<Gpu>> {
        Self::new(&AdapterChoice::from_env())
    }

    /// The most bytes one storage buffer may hold and bind: what a tensor, a batch of views or
    /// a slice of a bank must fit in.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Software rasterisers (lavapipe, WARP, SwiftShader) run every invocation on CPU cores:
    /// they favour register-blocked kernels without workgroup memory and barriers.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The subgroup size when the device has subgroups of one fixed size.
    pub fn fixed_subgroup_size(&self) -> Option<usize> {
        let fixed = self.info.subgroup_min_size == self.info.subgroup_max_size;
        (self.features.contains(wgpu::Features::SUBGROUP) && fixed)
            .then_some(self.info.subgroup_min_size as usize)
    }

    /// Every byte this device's buffers were created with, for "nothing allocated per step".
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated_bytes.load(Ordering::Relaxed)
    }

    /// A buffer, counted. Storage buffers are checked against the adapter's binding limit.
    pub fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let size = size.max(4).next_multiple_of(16);
        if usage.contains(wgpu::BufferUsages::STORAGE)
            && size > self.limits.max_storage_buffer_binding_size
        {
            return Err(Error::AdapterLimit {
                what: label.to_string(),
                needed: size,
                limit: self.limits.max_storage_buffer_binding_size,
            });
        }
        if size > self.limits.max_buffer_size {
            return Err(Error::AdapterLimit {
                what: label.to_string(),
                needed: size,
                limit: self.limits.max_buffer_size,
            });
        }
        self.allocated_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer that tensors live in: readable, writable, copyable both ways.
    pub fn storage_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.create_buffer(
            label,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )
    }

    /// Records a kernel launch: the pipeline (cached), a uniform buffer holding `params`
    /// (binding 0, skipped when empty) and a bind group over `bindings`.
    pub fn dispatch(
        &self,
        key: &KernelKey,
        params: &[u32],
        bindings: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::AdapterLimit {
                what: format!(
                    "{} workgroups of {}::{}",
                    workgroups.iter().product::<u32>(),
                    key.shader,
                    key.entry
                ),
                needed: u64::from(*workgroups.iter().max().unwrap()),
                limit: u64::from(max),
            });
        }
        let pipeline = self.pipelines.pipeline(&self.device, key);
        let uniform = if params.is_empty() {
            None
        } else {
            let buf = self.create_buffer(
                "params",
                (params.len() * 4) as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            )?;
            self.queue
                .write_buffer(&buf, 0, bytemuck::cast_slice(params));
            Some(buf)
        };
        let mut entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        if let Some(u) = &uniform {
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: u.as_entire_binding(),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(key.entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(Dispatch {
            label: format!("{}::{}", key.shader, key.entry).into(),
            pipeline,
            bind_group,
            workgroups,
        })
    }

    /// Encodes `dispatches` into one compute pass of `encoder`, in order.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
        let refs: Vec<&Dispatch> = dispatches.iter().collect();
        self.encode_refs(encoder, &refs);
    }

    /// `encode` for dispatches gathered from several owners.
    pub fn encode_refs(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        for d in dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// Runs `dispatches` in one submission and waits for them.
    pub fn run(&self, dispatches: &[Dispatch]) -> Result<()> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.encode(&mut encoder, dispatches);
        self.queue.submit([encoder.finish()]);
        self.wait()
    }

    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    pub fn write_f32(&self, buffer: &wgpu::Buffer, data: &[f32]) {
        self.queue
            .write_buffer(buffer, 0, bytemuck::cast_slice(data));
    }

    /// Copies `len` floats out of `buffer` and waits for them (not for a training step's hot path).
    pub fn read_f32(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let out = self.map_read(&[(&staging, len)])?;
        Ok(out.into_iter().next().unwrap())
    }

    /// Maps staging buffers (after their copies were submitted), waits, and copies them out.
    pub fn map_read(&self, staging: &[(&wgpu::Buffer, usize)]) -> Result<Vec<Vec<f32>>> {
        for (buf, _) in staging {
            buf.map_async(wgpu::MapMode::Read, .., |r| {
                r.expect("mapping a staging buffer failed")
            });
        }
        self.wait()?;
        staging
            .iter()
            .map(|(buf, len)| {
                let view = buf
                    .get_mapped_range(..)
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                let data = bytemuck::cast_slice::<u8, f32>(&view)[..*len].to_vec();
                drop(view);
                buf.unmap();
                Ok(data)
            })
            .collect()
    }
}

/// Workgroup counts for `n` one-dimensional workgroups, folded into y past the per-dimension limit.
/// Kernels recover the linear workgroup index as `wid.x + wid.y * num_workgroups.x`.
pub fn grid_1d(n: u32, max_per_dim: u32) -> [u32; 3] {
    if n <= max_per_dim {
        [n.max(1), 1, 1]
    } else {
        let y = n.div_ceil(max_per_dim);
        [n.div_ceil(y), y, 1]
    }
}
