//! Choosing an adapter: backend and name filters from flags or the environment, and a
//! description of every adapter for `byol info`.

use crate::{Error, Result};

/// How the user narrowed the choice of adapter. Empty means: the best one available.
#[derive(Debug, Clone, Default)]
pub struct AdapterChoice {
    /// `vulkan`, `metal`, `dx12` or `gl`.
    pub backend: Option<String>,
    /// A case-insensitive substring of the adapter's name.
    pub name: Option<String>,
    /// Use at most this many bytes per buffer and storage binding, below the adapter's own
    /// limits: to see how a run fits a smaller GPU.
    pub max_binding_bytes: Option<u64>,
    /// Take the n-th (modulo their number) of the equally preferred adapters rather than the
    /// first: one device per process when several share a machine. Ignored with a name.
    pub ordinal: Option<usize>,
    /// Whether the device times its GEMM kernel candidates and keeps the fastest (see
    /// `Gpu::fastest`); by default on hardware GPUs only.
    pub tune_kernels: Option<bool>,
}

impl AdapterChoice {
    /// The choice made through `BYOL_BACKEND`, `BYOL_ADAPTER`, `BYOL_MAX_BINDING_BYTES` and
    /// `BYOL_TUNE` (1, true, yes or on; 0, false, no or off).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self {
            backend: var("BYOL_BACKEND"),
            name: var("BYOL_ADAPTER"),
            max_binding_bytes: var("BYOL_MAX_BINDING_BYTES").and_then(|v| v.trim().parse().ok()),
            ordinal: None,
            tune_kernels: var("BYOL_TUNE").and_then(|v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Some(true),
                    "0" | "false" | "no" | "off" => Some(false),
                    _ => None,
                }
            }),
        }
    }

    /// Flags win over the environment, field by field.
    pub fn or(self, fallback: AdapterChoice) -> Self {
        Self {
            backend: self.backend.or(fallback.backend),
            name: self.name.or(fallback.name),
            max_binding_bytes: self.max_binding_bytes.or(fallback.max_binding_bytes),
            ordinal: self.ordinal.or(fallback.ordinal),
            tune_kernels: self.tune_kernels.or(fallback.tune_kernels),
        }
    }

    pub fn backends(&self) -> Result<wgpu::Backends> {
        match self
            .backend
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => Ok(wgpu::Backends::all()),
            Some("vulkan" | "vk") => Ok(wgpu::Backends::VULKAN),
            Some("metal") => Ok(wgpu::Backends::METAL),
            Some("dx12" | "d3d12") => Ok(wgpu::Backends::DX12),
            Some("gl" | "gles" | "opengl") => Ok(wgpu::Backends::GL),
            Some(other) => Err(Error::UnknownBackend(other.to_string())),
        }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.backend {
            parts.push(format!("backend '{b}'"));
        }
        if let Some(n) = &self.name {
            parts.push(format!("name containing '{n}'"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" with {}", parts.join(" and "))
        }
    }
}

pub fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter the instance sees for the chosen backends.
pub fn enumerate(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    let instance = new_instance(choice.backends()?);
    Ok(pollster::block_on(
        instance.enumerate_adapters(choice.backends()?),
    ))
}

/// Discrete GPUs first, then integrated, virtual, and CPU (software) adapters last.
fn preference(info: &wgpu::AdapterInfo) -> u32 {
    let by_type = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // The GL backend is the least capable for compute: prefer anything else of the same type.
    let gl_penalty = u32::from(info.backend == wgpu::Backend::Gl);
    by_type * 2 + gl_penalty
}

/// The adapter the choice selects: the most capable one that matches both filters.
pub fn select(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    let mut adapters: Vec<wgpu::Adapter> = enumerate(choice)?
        .into_iter()
        .filter(|a| match &choice.name {
            Some(n) => a.get_info().name.to_lowercase().contains(&n.to_lowercase()),
            None => true,
        })
        .collect();
    adapters.sort_by_key(|a| preference(&a.get_info()));
    if let (Some(n), None, Some(first)) = (choice.ordinal, &choice.name, adapters.first()) {
        let best = preference(&first.get_info());
        let equal = adapters
            .iter()
            .take_while(|a| preference(&a.get_info()) == best)
            .count();
        adapters.swap(0, n % equal);
    }
    adapters.into_iter().next().ok_or_else(|| Error::NoAdapter {
        filter: choice.describe(),
        hint: no_adapter_hint(choice),
    })
}

fn no_adapter_hint(choice: &AdapterChoice) -> String {
    let mut hint = String::new();
    if choice.backend.is_some() || choice.name.is_some() {
        hint.push_str("Run `byol info` to list the adapters there are, or drop --backend/--adapter (BYOL_BACKEND/BYOL_ADAPTER). ");
    }
    if cfg!(target_os = "linux") {
        hint.push_str("On Linux without a GPU, install Mesa's software Vulkan driver (lavapipe): `apt-get install mesa-vulkan-drivers libvulkan1`.");
    } else {
        hint.push_str("Install or update the GPU driver (Vulkan, Metal or DX12).");
    }
    hint
}

/// Why training on this adapter will be slow, with the way to the fast path; None for an
/// adapter the fast kernels suit.
pub fn slowness(info: &wgpu::AdapterInfo, features: wgpu::Features) -> Option<String> {
    let fix = if cfg!(target_os = "linux") {
        "install Mesa's Vulkan driver (`apt-get install mesa-vulkan-drivers libvulkan1`) or use a GPU"
    } else {
        "use a GPU with a Vulkan, Metal or DX12 driver"
    };
    let cpu = info.device_type == wgpu::DeviceType::Cpu;
    if info.backend == wgpu::Backend::Gl && cpu {
        Some(format!(
            "slow adapter: {} is a CPU rasteriser behind OpenGL (the quick preset's first step took 295 s there, 5 s on the same CPU through Vulkan): {fix}",
            info.name
        ))
    } else if info.backend == wgpu::Backend::Gl {
        Some(format!(
            "slow adapter: {} runs compute through OpenGL, without subgroups and with tighter limits than its Vulkan, Metal or DX12 driver: {fix}",
            info.name
        ))
    } else if !features.contains(wgpu::Features::SUBGROUP) {
        Some(format!(
            "slow adapter: {} has no subgroup operations, so the step falls back to the slower kernels: {fix}",
            info.name
        ))
    } else {
        None
    }
}

/// One adapter described for people: name, backend, type, driver, key limits and features.
pub fn describe(adapter: &wgpu::Adapter) -> String {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    let has = |f: wgpu::Features| if features.contains(f) { "yes" } else { "no" };
    format!(
        "{name}\n  backend: {backend:?}, type: {ty:?}, driver: {driver} {driver_info}\n  \
         max buffer size: {maxbuf} B, max storage binding: {maxsb} B, storage buffers per stage: {nsb}\n  \
         workgroup: max {wgx}x{wgy}x{wgz}, {inv} invocations, {wgmem} B shared memory, {ndisp} workgroups per dimension\n  \
         timestamp queries: {ts}, f16: {f16}, subgroups: {sg}{slow}",
        name = info.name,
        backend = info.backend,
        ty = info.device_type,
        driver = info.driver,
        driver_info = info.driver_info,
        maxbuf = limits.max_buffer_size,
        maxsb = limits.max_storage_buffer_binding_size,
        nsb = limits.max_storage_buffers_per_shader_stage,
        wgx = limits.max_compute_workgroup_size_x,
        wgy = limits.max_compute_workgroup_size_y,
        wgz = limits.max_compute_workgroup_size_z,
        inv = limits.max_compute_invocations_per_workgroup,
        wgmem = limits.max_compute_workgroup_storage_size,
        ndisp = limits.max_compute_workgroups_per_dimension,
        ts = has(wgpu::Features::TIMESTAMP_QUERY),
        f16 = has(wgpu::Features::SHADER_F16),
        sg = has(wgpu::Features::SUBGROUP),
        slow = slowness(&info, features).map_or(String::new(), |s| format!("\n  {s}")),
    )
}
