//! The one place that picks burn devices and names backend features.
//!
//! - CPU: burn `flex` (pure Rust, rayon + SIMD; ENGINEERING.md A.2).
//! - GPU: burn `wgpu` (Vulkan on Android/Linux, Metal through WGSL on iOS; B.8). The wgpu runtime
//!   can be initialized once per process, so the GPU handle is a process-wide singleton, and
//!   initialization failures (no adapter, driver refusal) become a typed error, never a panic.

use std::sync::OnceLock;

use burn::tensor::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which backend the application prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendPreference {
    /// GPU when present and it passes the golden self-test; CPU otherwise.
    #[default]
    Auto,
    /// GPU or an error.
    Gpu,
    /// CPU only.
    Cpu,
}

/// The backend a model actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn `flex` on the CPU.
    Cpu,
    /// burn `wgpu`.
    Gpu,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        })
    }
}

/// What we know about the GPU adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Adapter name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// Driver name and version.
    pub driver: String,
    /// Graphics API (`Vulkan`, `Metal`, …).
    pub api: String,
    /// Adapter type (`Cpu`, `DiscreteGpu`, `IntegratedGpu`, …).
    pub device_type: String,
    /// Largest storage-buffer binding, in bytes: no single weight buffer may exceed it.
    pub max_storage_binding: u64,
}

impl GpuInfo {
    /// A stable key for caching per-device verdicts (name + driver + API).
    pub fn cache_key(&self) -> String {
        format!("{}|{}|{}", self.name, self.driver, self.api)
    }
}

struct Gpu {
    device: Device,
    info: GpuInfo,
}

static GPU: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();

/// The CPU device.
pub fn cpu_device() -> Device {
    Device::flex()
}

/// The GPU device and its adapter info, initializing the wgpu runtime on first use.
pub fn gpu() -> Result<(Device, GpuInfo)> {
    let r = GPU.get_or_init(|| {
        // Initialization talks to the driver; a buggy driver may panic inside wgpu. Contain it.
        let init = std::panic::catch_unwind(|| {
            Device::wgpu_options().device_kind(DeviceKind::DefaultDevice).init_with_setup()
        });
        match init {
            Ok(Ok((device, setup))) => {
                let ai = setup.adapter.get_info();
                let limits = setup.adapter.limits();
                let info = GpuInfo {
                    name: ai.name.clone(),
                    driver: format!("{} {}", ai.driver, ai.driver_info).trim().to_string(),
                    api: format!("{:?}", ai.backend),
                    device_type: format!("{:?}", ai.device_type),
                    max_storage_binding: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
                };
                log::info!(
                    "gpu: {} ({}, {}), storage binding limit {} MiB",
                    info.name,
                    info.api,
                    info.driver,
                    info.max_storage_binding >> 20
                );
                Ok(Gpu { device, info })
            }
            Ok(Err(e)) => Err(format!("wgpu initialization failed: {e}")),
            Err(_) => Err("wgpu initialization panicked".to_string()),
        }
    });
    match r {
        Ok(g) => Ok((g.device.clone(), g.info.clone())),
        Err(reason) => Err(Error::Backend { reason: reason.clone() }),
    }
}

/// Sets the number of CPU threads used by the CPU backend (rayon's global pool, which burn
/// `flex` uses) and by the CPU kernels and layers (`quant::cpu::pool`: the calling thread plus
/// `threads − 1` workers). Only the first call in a process takes effect; later calls with
/// another value are logged and ignored.
pub fn set_cpu_threads(threads: usize) {
    static SET: OnceLock<usize> = OnceLock::new();
    let got = *SET.get_or_init(|| {
        if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_err() {
            log::warn!("cpu thread pool was already initialized; keeping its size");
        }
        if crate::quant::cpu::pool::set_threads(threads) != threads {
            log::warn!("cpu kernel pool was already started; keeping its size");
        }
        threads
    });
    if got != threads {
        log::warn!("cpu threads already set to {got}; ignoring request for {threads}");
    }
}
