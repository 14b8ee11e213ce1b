//! The WGSL sources compiled into the binary, and the pipelines made from them, each once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One file under shaders/.
pub struct ShaderSource {
    pub name: &'static str,
    pub source: &'static str,
    /// Compiled without wgpu's injected bounds checks and loop bounding, which keep drivers
    /// from unrolling the hot loops (1.5-2x on lavapipe). Only for kernels that clamp or guard
    /// every index themselves and whose loops all have a bound the host sets.
    pub unchecked: bool,
}

macro_rules! shader {
    ($name:literal, $unchecked:expr) => {
        ShaderSource {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name, ".wgsl")),
            unchecked: $unchecked,
        }
    };
    // A shader that uses the functions of another file (cascade.wgsl for those that sum long
    // runs, gemm_operands.wgsl for the tiled GEMMs): that file goes in front of it.
    ($name:literal, $unchecked:expr, $prefix:literal) => {
        ShaderSource {
            name: $name,
            source: concat!(
                include_str!(concat!("../../shaders/", $prefix, ".wgsl")),
                include_str!(concat!("../../shaders/", $name, ".wgsl"))
            ),
            unchecked: $unchecked,
        }
    };
}

pub const SHADERS: &[ShaderSource] = &[
    shader!("gemm_tiled", true, "gemm_operands"),
    shader!("gemm_tiled_large", true, "gemm_operands"),
    shader!("matmul_vec4", true),
    shader!("elementwise", false),
    shader!("reduce", false, "cascade"),
    shader!("rownorm", false),
    shader!("batchnorm", false, "cascade"),
    shader!("batchnorm_vec4", true, "cascade"),
    shader!("pool", false),
    shader!("optim", false, "cascade"),
    shader!("fma_peak", true),
    shader!("bandwidth_peak", false),
    shader!("augment", false),
    shader!("stats", false),
];

pub fn shader_source(name: &str) -> Option<&'static ShaderSource> {
    SHADERS.iter().find(|s| s.name == name)
}

/// Which entry point of which shader, with its pipeline-overridable constants.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelKey {
    pub shader: String,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
    /// WGSL generated at run time, for kernels that must be unrolled in source; `shader` names
    /// it in the cache. Such code must clamp or guard every index (it is compiled unchecked).
    pub generated: Option<Arc<str>>,
}

impl KernelKey {
    /// An entry point of a file under shaders/.
    pub fn new(shader: &'static str, entry: &'static str) -> Self {
        Self {
            shader: shader.to_string(),
            entry,
            constants: Vec::new(),
            generated: None,
        }
    }

    /// The `main` entry point of generated source, cached under `name`.
    pub fn generated(name: String, source: impl FnOnce() -> String) -> Self {
        Self {
            shader: name,
            entry: "main",
            constants: Vec::new(),
            generated: Some(source().into()),
        }
    }

    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value));
        self
    }

    fn cache_key(&self) -> String {
        let mut key = format!("{}::{}", self.shader, self.entry);
        for (n, v) in &self.constants {
            key.push_str(&format!(";{n}={v}"));
        }
        key
    }
}

/// Shader modules and compute pipelines, created on first use and kept for the device's life.
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<String, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

impl PipelineCache {
    pub fn pipeline(&self, device: &wgpu::Device, key: &KernelKey) -> wgpu::ComputePipeline {
        let cache_key = key.cache_key();
        if let Some(p) = self.pipelines.lock().unwrap().get(&cache_key) {
            return p.clone();
        }
        let module = self.module(device, key);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&cache_key),
            layout: None,
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &key.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.pipelines
            .lock()
            .unwrap()
            .insert(cache_key, pipeline.clone());
        pipeline
    }

    fn module(&self, device: &wgpu::Device, key: &KernelKey) -> wgpu::ShaderModule {
        let name = key.shader.as_str();
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(name) {
            return m.clone();
        }
        let (source, unchecked): (&str, bool) = match &key.generated {
            Some(src) => (src, true),
            None => {
                let file = shader_source(name).unwrap_or_else(|| panic!("no shader named {name}"));
                (file.source, file.unchecked)
            }
        };
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if unchecked {
            // SAFETY: `unchecked` is set only for shaders (files or generated) that guard or
            // clamp every buffer index against sizes the host passes, and whose loops are
            // bounded by those sizes.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            device.create_shader_module(desc)
        };
        modules.insert(name.to_string(), module.clone());
        module
    }
}
