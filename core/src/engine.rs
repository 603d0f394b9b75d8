//! The engine: a loaded model plus its tokenizer and chat template. It creates [`Session`]s.
//!
//! Backend choice (`BackendPreference::Auto`): GPU drivers, Android Vulkan ones in particular,
//! are known to produce garbage silently, so before trusting the GPU the engine runs a short
//! golden self-test — a fixed prompt whose last-position logits on the GPU must match the CPU
//! reference path — caches the verdict per device, driver and model, and falls back to the CPU
//! visibly (a `log::warn!` and [`EngineInfo::fallback_reason`]) when the GPU is missing, fails
//! or disagrees.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::{self, BackendKind, BackendPreference, GpuInfo};
use crate::gguf::GgufFile;
use crate::hf::HfFolder;
use crate::memory::{TrimLevel, TrimRegistry, TrimReport, Trimmable};
use crate::model::decoder::{Decoder, DecoderConfig};
use crate::model::layers::WeightMode;
use crate::model::{Architecture, CausalLm};
use crate::session::{Session, SessionConfig};
use crate::structured::ConstraintCompiler;
use crate::tokenizer::{ChatTemplate, GgufVocab, Tokenizer};
use crate::weights::{GgufWeights, WeightId, WeightSource};
use crate::{Error, Result};

/// Largest single buffer we create on the CPU (no device limit there; keeps shards uniform).
const CPU_MAX_BUFFER: u64 = 1 << 30;
/// Self-test tolerance: max |Δlogit| between GPU and CPU over the whole vocabulary. The CPU path
/// quantizes activations to 8 bits for its integer dot products (as llama.cpp does) while the GPU
/// keeps them in f32, and GPU drivers evaluate `exp`/`tanh` with their own precision: on an NVIDIA
/// H200 (Vulkan) the two disagree by 0.66 on the self-test prompt while all 30 golden cases match
/// llama.cpp's tokens. A broken driver is off by many logits, or NaN. The argmax is not compared:
/// the prompt's top two tokens are a near-tie that int8 and f32 activations already order
/// differently on the CPU alone (` one` vs ` Paris`).
const SELF_TEST_TOLERANCE: f32 = 1.0;

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Preferred backend.
    pub backend: BackendPreference,
    /// CPU threads (None = all cores).
    pub threads: Option<usize>,
    /// Run the GPU golden self-test for `Auto` (and cache its verdict).
    pub gpu_self_test: bool,
}

impl EngineConfig {
    /// Checks `threads` and sizes the CPU pool with it.
    fn apply_threads(&self) -> Result<()> {
        if let Some(t) = self.threads {
            if t == 0 || t > 1024 {
                return Err(Error::InvalidParameter { name: "threads", reason: "must be in 1..=1024".into() });
            }
            backend::set_cpu_threads(t);
        }
        Ok(())
    }
}

/// A private duplicate of the caller's descriptor `fd` (close-on-exec), after checking it is open.
#[cfg(unix)]
fn dup_fd(fd: i32) -> Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let invalid = |reason: &str| Error::InvalidParameter { name: "fd", reason: reason.into() };
    if fd < 0 {
        return Err(invalid("a descriptor is never negative"));
    }
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table; an invalid `fd` is EBADF.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(invalid(&format!("not an open descriptor ({})", std::io::Error::last_os_error())));
    }
    // SAFETY: `dup` is a descriptor we just created and own.
    Ok(unsafe { std::fs::File::from_raw_fd(dup) })
}

#[cfg(not(unix))]
fn dup_fd(_fd: i32) -> Result<std::fs::File> {
    Err(Error::InvalidParameter {
        name: "fd",
        reason: "file descriptors are supported on Unix (Android, iOS, Linux, macOS) only".into(),
    })
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { backend: BackendPreference::Auto, threads: None, gpu_self_test: true }
    }
}

/// What was loaded, and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Model file.
    pub path: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, if any.
    pub name: Option<String>,
    /// Parameters.
    pub parameter_count: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// The model's trained context.
    pub context_length: usize,
    /// Backend the model runs on.
    pub backend: BackendKind,
    /// The GPU, when one was found.
    pub gpu: Option<GpuInfo>,
    /// Why the CPU is used although a GPU was wanted (`Auto` fallback).
    pub fallback_reason: Option<String>,
    /// Load time.
    pub load_ms: f64,
}

pub(crate) struct Inner {
    model: Box<dyn CausalLm>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    info: EngineInfo,
    /// Constrained decoding's token trie and parser factory: built on first use (or by
    /// [`Engine::prepare_constraints`]), shared by every session, released by [`Engine::trim`]
    /// at `Low` and above. A build failure is kept (it would fail again).
    constraints: std::sync::Mutex<Option<std::result::Result<Arc<ConstraintCompiler>, String>>>,
    /// The mapped GGUF file the CPU kernels read in place (`None` for folders and the GPU).
    mapped: Option<GgufWeights>,
    /// Sessions and pools that give memory back on [`Engine::trim`].
    trim: TrimRegistry,
    /// [`crate::session_file::model_identity`] of the loaded weights.
    model_id: String,
}

/// A loaded model. Cheap to clone (shared); `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.inner.info).finish_non_exhaustive()
    }
}

/// The opened model files: a GGUF file, or a Hugging Face folder.
enum Checkpoint {
    Gguf(GgufWeights),
    Hf(Box<HfFolder>),
}

impl Checkpoint {
    fn weights(&self) -> &dyn WeightSource {
        match self {
            Self::Gguf(w) => w,
            Self::Hf(f) => f.weights(),
        }
    }

    fn architecture(&self) -> Result<Architecture> {
        match self {
            Self::Gguf(w) => Architecture::from_gguf_name(w.file().metadata().get_str("general.architecture")?),
            Self::Hf(f) => Ok(f.architecture()),
        }
    }

    /// The architecture file's reading of the checkpoint's hyper-parameters.
    fn config(&self, arch: Architecture, vocab: usize) -> Result<DecoderConfig> {
        match self {
            Self::Gguf(w) => (arch.def().from_gguf)(w.file().metadata(), w, vocab),
            Self::Hf(f) => (arch.def().from_hf)(f.config(), vocab),
        }
    }

    fn file_size(&self) -> u64 {
        match self {
            Self::Gguf(w) => w.file().file_size(),
            Self::Hf(f) => f.weights().file_size(),
        }
    }

    fn tensor_count(&self) -> usize {
        match self {
            Self::Gguf(w) => w.file().tensors().len(),
            Self::Hf(f) => f.weights().tensor_count(),
        }
    }

    fn parameter_count(&self) -> u64 {
        match self {
            Self::Gguf(w) => w.file().tensors().iter().map(|t| t.n_elements()).sum(),
            Self::Hf(f) => f.weights().parameter_count(),
        }
    }
}

/// Builds the model for `ckpt` on one backend.
fn build_model(ckpt: &Checkpoint, kind: BackendKind) -> Result<Box<dyn CausalLm>> {
    let arch = ckpt.architecture()?;
    let weights = ckpt.weights();
    let vocab = weights.raw(WeightId::TokenEmbedding)?.rows;
    if let Some(build) = arch.own_model() {
        // An architecture that is its own model (not a decoder config) loads from GGUF only.
        let Checkpoint::Gguf(w) = ckpt else {
            return Err(Error::UnsupportedArchitecture {
                name: format!("{} (from a Hugging Face folder)", arch.name()),
            });
        };
        return build(w.file().metadata(), w, vocab, kind == BackendKind::Gpu);
    }
    let (device, max_buffer) = match kind {
        BackendKind::Cpu => (backend::cpu_device(), CPU_MAX_BUFFER),
        BackendKind::Gpu => {
            let (d, info) = backend::gpu()?;
            // Leave headroom under the binding limit for alignment and allocator rounding.
            (d, info.max_storage_binding.saturating_sub(1 << 20).max(1 << 20))
        }
    };
    // CPU: the file's blocks are multiplied in place. GPU: the blocks are uploaded repacked and
    // multiplied by our CubeCL kernels (quant::gpu), or dequantized f32 if that fails.
    let mode = match kind {
        BackendKind::Cpu if std::env::var_os("EDGEWISE_CPU_DENSE").is_none() => WeightMode::QuantizedCpu,
        BackendKind::Gpu if std::env::var_os("EDGEWISE_GPU_DENSE").is_none() => WeightMode::QuantizedGpu,
        _ => WeightMode::Dense,
    };
    let cfg = ckpt.config(arch, vocab)?;
    let load = |mode: WeightMode| -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(Decoder::load(cfg.clone(), weights, mode, &device, max_buffer)?))
    };
    // Device allocation failures inside burn surface as panics; keep them from escaping.
    let try_load = |mode: WeightMode| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(mode))).unwrap_or_else(|_| {
            Err(Error::Backend { reason: format!("loading the model on the {kind} backend panicked") })
        })
    };
    match try_load(mode) {
        Err(e) if mode == WeightMode::QuantizedGpu => {
            log::warn!("quantized gpu weights failed ({e}); falling back to dense f32 weights");
            try_load(WeightMode::Dense)
        }
        r => r,
    }
}

/// Returns freed heap pages to the system (glibc keeps them otherwise, and the tokenizer build
/// frees ~100 MB of scratch just before the model's pages are touched).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What opening a checkpoint gives: its weights, tokenizer, chat template, architecture and name.
type Opened = (Checkpoint, Tokenizer, ChatTemplate, String, Option<String>);

/// The GPU model, or why not (and the GPU when one was found), for the `Auto` fallback.
type GpuAttempt = std::result::Result<(Box<dyn CausalLm>, GpuInfo), (String, Option<GpuInfo>)>;

/// The fixed self-test prompt: plain, common tokens that every vocabulary has.
const SELF_TEST_PROMPT: &str = "The capital of France is";

fn self_test_logits(model: &dyn CausalLm, ids: &[u32]) -> Result<Vec<f32>> {
    let mut cache = model.new_cache(64, 64)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.forward(ids, &mut cache)))
        .unwrap_or_else(|_| Err(Error::Backend { reason: "self-test forward pass panicked".into() }))
}

/// Whether the GPU's self-test logits agree with the CPU's: same length, all finite, and max |Δ|
/// within [`SELF_TEST_TOLERANCE`]. Returns that max |Δ|, or why not.
fn self_test_verdict(reference: &[f32], got: &[f32]) -> std::result::Result<f32, String> {
    if got.len() != reference.len() || got.is_empty() {
        return Err(format!("{} logits, expected {}", got.len(), reference.len()));
    }
    if got.iter().any(|v| !v.is_finite()) {
        return Err("non-finite logits".into());
    }
    let diff = got.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    if diff > SELF_TEST_TOLERANCE {
        return Err(format!("max |Δlogit| {diff:.3} > {SELF_TEST_TOLERANCE}"));
    }
    Ok(diff)
}

fn verdict_path() -> Option<PathBuf> {
    crate::catalog::edgewise_home().ok().map(|h| h.join("cache").join("gpu_verdicts.json"))
}

fn cached_verdict(key: &str) -> Option<bool> {
    let text = std::fs::read_to_string(verdict_path()?).ok()?;
    let map: std::collections::BTreeMap<String, bool> = serde_json::from_str(&text).ok()?;
    map.get(key).copied()
}

fn store_verdict(key: &str, ok: bool) {
    let Some(p) = verdict_path() else { return };
    let mut map: std::collections::BTreeMap<String, bool> =
        std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    map.insert(key.to_string(), ok);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&map).unwrap_or_default())?;
        std::fs::rename(&tmp, &p)
    };
    if let Err(e) = write() {
        log::warn!("could not cache the gpu self-test verdict: {e}");
    }
}

impl Engine {
    /// Loads a model: a GGUF file, or a Hugging Face folder (`config.json`, `*.safetensors`,
    /// `tokenizer.json`, and the chat template of `tokenizer_config.json` when present).
    pub fn load(path: impl AsRef<Path>, cfg: EngineConfig) -> Result<Self> {
        let t0 = Instant::now();
        let path = path.as_ref();
        cfg.apply_threads()?;
        let opened = if crate::hf::is_model_folder(path) { Self::open_hf(path)? } else { Self::open_gguf(path)? };
        Self::load_opened(opened, path, cfg, t0)
    }

    /// Loads the GGUF model stored in `len` bytes (to the end of the file when `None`) at
    /// `offset` of the open file descriptor `fd` — what Android apps hold for a model in their
    /// assets or an asset pack (`AssetFileDescriptor`: descriptor, start offset, length; stored
    /// uncompressed) or behind a content URI (`ParcelFileDescriptor`). The descriptor is
    /// checked (open, a regular file, the region inside it), duplicated — the caller keeps and
    /// closes its own — and the region is memory-mapped like a model file. Unix only.
    pub fn load_fd(fd: i32, offset: u64, len: Option<u64>, cfg: EngineConfig) -> Result<Self> {
        let t0 = Instant::now();
        cfg.apply_threads()?;
        let file = dup_fd(fd)?;
        let label = PathBuf::from(format!("fd:{fd}@{offset}"));
        let gguf = GgufFile::from_file(file, offset, len, &label)?;
        let opened = Self::open_gguf_file(gguf, "fd-model")?;
        Self::load_opened(opened, &label, cfg, t0)
    }

    fn load_opened(opened: Opened, path: &Path, cfg: EngineConfig, t0: Instant) -> Result<Self> {
        let (ckpt, tokenizer, template, arch_name, model_name) = opened;
        log::debug!("engine: checkpoint and tokenizer in {:.0?}", t0.elapsed());
        // Before the GPU path hands the file's pages back: it reads ~50 KB of them.
        let model_id = crate::session_file::model_identity(&arch_name, ckpt.weights());
        let mut gpu_info = None;
        let mut fallback = None;
        let model: Box<dyn CausalLm> = match cfg.backend {
            BackendPreference::Cpu => build_model(&ckpt, BackendKind::Cpu)?,
            BackendPreference::Gpu => {
                // An architecture without GPU kernels (qwen35) says so before any GPU is probed.
                let m = build_model(&ckpt, BackendKind::Gpu)?;
                gpu_info = Some(backend::gpu()?.1);
                m
            }
            BackendPreference::Auto => match Self::try_gpu(&ckpt, &tokenizer, cfg.gpu_self_test) {
                Ok((m, info)) => {
                    gpu_info = Some(info);
                    m
                }
                Err((reason, info)) => {
                    log::warn!("using the CPU: {reason}");
                    gpu_info = info;
                    fallback = Some(reason);
                    build_model(&ckpt, BackendKind::Cpu)?
                }
            },
        };
        let backend = if gpu_info.is_some() && fallback.is_none() && cfg.backend != BackendPreference::Cpu {
            BackendKind::Gpu
        } else {
            BackendKind::Cpu
        };
        if let Checkpoint::Gguf(w) = &ckpt {
            match backend {
                // The weights now live in GPU buffers (system memory on a phone): the file's
                // pages the upload read need not stay resident as well.
                BackendKind::Gpu => w.file().release_resident(),
                // After a GPU attempt that fell back (its upload switched the map to 4 KiB
                // pages), the CPU kernels stream the map again: 2 MiB pages where possible.
                BackendKind::Cpu => {
                    if gpu_info.is_some() {
                        w.file().set_large_pages(true);
                    }
                }
            }
        }
        let info = EngineInfo {
            path: path.to_path_buf(),
            architecture: arch_name,
            name: model_name,
            parameter_count: ckpt.parameter_count(),
            file_size: ckpt.file_size(),
            vocab_size: model.vocab_size(),
            context_length: model.max_context(),
            backend,
            gpu: gpu_info,
            fallback_reason: fallback,
            load_ms: t0.elapsed().as_secs_f64() * 1e3,
        };
        log::info!("engine: {} on {} in {:.0} ms", info.architecture, info.backend, info.load_ms);
        let mapped = match (&ckpt, backend) {
            (Checkpoint::Gguf(w), BackendKind::Cpu) => Some(w.clone()),
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                template,
                info,
                constraints: std::sync::Mutex::new(None),
                mapped,
                trim: TrimRegistry::default(),
                model_id,
            }),
        })
    }

    /// GPU with the golden self-test. Err carries the reason to fall back.
    /// A GGUF file: the tokenizer and template come from its metadata.
    fn open_gguf(path: &Path) -> Result<Opened> {
        let file = GgufFile::open(path)?;
        Self::open_gguf_file(file, path.file_stem().and_then(|s| s.to_str()).unwrap_or("model"))
    }

    /// An opened GGUF file; `stem` names its tokenizer cache (checked against the vocabulary, so
    /// a shared stem only costs a rebuild).
    fn open_gguf_file(mut file: GgufFile, stem: &str) -> Result<Opened> {
        let t0 = Instant::now();
        let vocab = GgufVocab::from_metadata(file.metadata())?;
        log::debug!("engine: gguf header and vocabulary in {:.0?}", t0.elapsed());
        // The SentencePiece merge derivation is cached per file (halves the tokenizer's build time).
        // Without a home directory (as on a phone without EDGEWISE_HOME) it is built every time.
        let key = format!("{stem}-{}", file.file_size());
        let tokenizer = match crate::catalog::edgewise_home() {
            Ok(home) => Tokenizer::from_gguf_vocab_cached(&vocab, &home.join("cache"), &key)?,
            Err(_) => Tokenizer::from_gguf_vocab(&vocab)?,
        };
        let arch_name = file.metadata().get_str("general.architecture")?.to_string();
        let model_name = file.metadata().opt_str("general.name")?.map(str::to_string);
        let bos = tokenizer.bos_id().and_then(|b| tokenizer.id_to_token(b));
        let eos = tokenizer.eos_id().and_then(|e| tokenizer.id_to_token(e));
        let template = ChatTemplate::from_gguf_template(vocab.chat_template.as_deref(), &arch_name, bos, eos)?;
        // The vocabulary lives on in the tokenizer: drop the metadata copy (tens of MB for 262k
        // pieces) and hand the build's scratch memory back to the system.
        drop(vocab);
        let dropped = file.metadata_mut().drop_arrays("tokenizer.ggml.");
        log::debug!("engine: dropped {dropped} tokenizer arrays from the metadata");
        release_free_memory();
        Ok((Checkpoint::Gguf(GgufWeights::new(Arc::new(file))), tokenizer, template, arch_name, model_name))
    }

    /// A Hugging Face folder: `tokenizer.json` and the folder's chat template (else the built-in one).
    fn open_hf(dir: &Path) -> Result<Opened> {
        let folder = HfFolder::open(dir)?;
        let tokenizer = Tokenizer::from_file(&folder.tokenizer_path()?)?;
        let arch_name = folder.architecture().name().to_string();
        let bos = tokenizer.bos_token();
        let eos = tokenizer.eos_id().and_then(|e| tokenizer.id_to_token(e));
        let template = ChatTemplate::from_gguf_template(folder.chat_template(), &arch_name, bos, eos)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok((Checkpoint::Hf(Box::new(folder)), tokenizer, template, arch_name, name))
    }

    // Called once per load: the size of the fallback reason does not matter.
    #[allow(clippy::result_large_err)]
    fn try_gpu(ckpt: &Checkpoint, tokenizer: &Tokenizer, self_test: bool) -> GpuAttempt {
        let (_, info) = backend::gpu().map_err(|e| (format!("no usable GPU ({e})"), None))?;
        // A software rasterizer (lavapipe/llvmpipe, SwiftShader) is slower than our CPU kernels.
        if info.device_type == "Cpu" {
            return Err((format!("only a software GPU adapter is present (`{}`)", info.name), Some(info)));
        }
        // `v2`: verdicts of the first, too strict tolerance are not reused.
        let key = format!("v2|{}|{}|{}", info.cache_key(), ckpt.file_size(), ckpt.tensor_count());
        let cached = if self_test { cached_verdict(&key) } else { Some(true) };
        if cached == Some(false) {
            return Err((format!("GPU `{}` failed the self-test earlier (cached verdict)", info.name), Some(info)));
        }
        let ids = tokenizer
            .encode(SELF_TEST_PROMPT, tokenizer.add_bos_default())
            .map_err(|e| (e.to_string(), Some(info.clone())))?;
        // Reference first, on the CPU, so both models are never resident at once.
        let reference = if cached.is_none() {
            let cpu = build_model(ckpt, BackendKind::Cpu).map_err(|e| (e.to_string(), Some(info.clone())))?;
            Some(self_test_logits(cpu.as_ref(), &ids).map_err(|e| (e.to_string(), Some(info.clone())))?)
        } else {
            None
        };
        let gpu =
            build_model(ckpt, BackendKind::Gpu).map_err(|e| (format!("GPU load failed: {e}"), Some(info.clone())))?;
        if let Some(reference) = reference {
            let verdict = self_test_logits(gpu.as_ref(), &ids)
                .map_err(|e| e.to_string())
                .and_then(|got| self_test_verdict(&reference, &got));
            store_verdict(&key, verdict.is_ok());
            let diff = verdict.map_err(|why| (format!("GPU self-test failed: {why}"), Some(info.clone())))?;
            log::info!("gpu self-test passed (max |Δlogit| {diff:.4})");
        }
        Ok((gpu, info))
    }

    /// What was loaded and where it runs.
    pub fn info(&self) -> &EngineInfo {
        &self.inner.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// The chat template.
    pub fn template(&self) -> &ChatTemplate {
        &self.inner.template
    }

    /// The compiler of output constraints for this model: its token trie is built on the first
    /// call (about a second of CPU for a 262k vocabulary; a concurrent caller waits for that build) and
    /// shared by every session until [`Engine::trim`] releases it.
    pub fn constraint_compiler(&self) -> Result<Arc<ConstraintCompiler>> {
        let mut slot = self.inner.constraints.lock().unwrap_or_else(|p| p.into_inner());
        let built = slot.get_or_insert_with(|| {
            let built = ConstraintCompiler::new(&self.inner.tokenizer, self.inner.model.vocab_size())
                .map(Arc::new)
                .map_err(|e| e.to_string());
            // The build's temporaries (the vocabulary as bytes, trie builders) go back to the system.
            release_free_memory();
            built
        });
        built.clone().map_err(|reason| Error::InvalidConstraint { reason })
    }

    /// Builds the constraint compiler ([`Engine::constraint_compiler`]) on a background thread
    /// now, so that the first constrained request does not wait for its token trie. Returns at
    /// once; a request that comes before the build is done waits for it.
    pub fn prepare_constraints(&self) {
        let engine = self.clone();
        let spawned = std::thread::Builder::new().name("edgewise-constraints".into()).spawn(move || {
            if let Err(e) = engine.constraint_compiler() {
                log::warn!("structured: preparing constrained decoding failed: {e}");
            }
        });
        if let Err(e) = spawned {
            log::warn!("structured: no thread to prepare constrained decoding: {e}");
        }
    }

    /// Whether the constraint compiler is built and cached (tests and `trim`'s log).
    pub fn constraints_ready(&self) -> bool {
        self.inner.constraints.try_lock().is_ok_and(|s| matches!(*s, Some(Ok(_))))
    }

    pub(crate) fn model(&self) -> &dyn CausalLm {
        self.inner.model.as_ref()
    }

    /// Raw next-token logits for `ids` from an empty context (tests and tools).
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let n = ids.len().max(1);
        let mut cache = self.model().new_cache(n.next_power_of_two().max(16), n)?;
        self.model().forward(ids, &mut cache)
    }

    /// Loads a LoRA adapter for this model (llama.cpp's GGUF adapter format; [`crate::lora`]),
    /// checked against the model's architecture and shapes. Share it between sessions; each picks
    /// its adapters and scales with [`Session::set_adapters`]. The base weights are not touched.
    pub fn load_adapter(&self, path: impl AsRef<Path>) -> Result<Arc<crate::lora::LoraAdapter>> {
        let none = || Error::Adapter { reason: "this model takes no LoRA adapters".into() };
        let cfg = self.model().decoder_config().ok_or_else(none)?;
        let shapes = self.model().adapter_shapes().ok_or_else(none)?;
        Ok(Arc::new(crate::lora::LoraAdapter::load_for(path, cfg, shapes)?))
    }

    /// A new session.
    pub fn new_session(&self, cfg: SessionConfig) -> Result<Session> {
        Session::new(self.clone(), cfg)
    }

    /// The loaded model's identity (64 hex digits; see [`crate::session_file::model_identity`]),
    /// which session files record and [`Engine::restore_session`] checks.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    /// A session restored from a file written by [`Session::save`]: its settings, conversation
    /// and KV cache, so the next turn prefills only the new message. A file of another model is
    /// [`Error::SessionModelMismatch`]; a damaged, truncated or foreign one
    /// [`Error::SessionFile`] (see [`crate::session_file`]).
    pub fn restore_session(&self, path: impl AsRef<Path>) -> Result<Session> {
        Session::restore(self.clone(), path.as_ref())
    }

    /// Hands memory back under pressure (see [`crate::memory`] for what each level frees).
    /// Safe at any time from any thread; whatever is in use is skipped, everything freed comes
    /// back on the next use, and answers do not change.
    pub fn trim(&self, level: TrimLevel) -> TrimReport {
        let mut report = self.inner.trim.trim(level);
        let mut constraints_released = false;
        if level >= TrimLevel::Low {
            if let tokenizers::models::ModelWrapper::BPE(bpe) = self.inner.tokenizer.hf().get_model() {
                bpe.clear_cache();
            }
            // The constraint compiler (tens of MiB for a large vocabulary) is rebuilt by the next
            // constrained request; a generation in flight keeps what it uses. Not while a build
            // holds the lock.
            if let Ok(mut slot) = self.inner.constraints.try_lock() {
                if matches!(*slot, Some(Ok(_))) {
                    *slot = None;
                    constraints_released = true;
                }
            }
        }
        // Freed buffers stay in the allocator's arenas (glibc keeps even 18 MB caches there once
        // its mmap threshold has grown) until they are handed back explicitly.
        release_free_memory();
        if level >= TrimLevel::Critical {
            if let Some(w) = &self.inner.mapped {
                // Clean pages of a read-only file mapping: the next pass faults them back in.
                w.file().release_resident();
                // The CPU kernels stream the whole map per token: 2 MiB pages again when they return.
                w.file().set_large_pages(true);
                report.weights_released = true;
            }
        }
        log::info!(
            "trim {level:?}: {} KiB of KV cache from {} sessions, weights released: {}, constraint compiler released: {constraints_released}",
            report.kv_cache_bytes >> 10,
            report.sessions,
            report.weights_released
        );
        report
    }

    /// Registers a holder for [`Engine::trim`].
    pub(crate) fn register_trimmable(&self, target: std::sync::Weak<dyn Trimmable>) {
        self.inner.trim.register(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_verdict_accepts_numeric_noise_and_rejects_garbage() {
        // Distinct logits 0.01 apart (37 is coprime with 1000).
        let reference: Vec<f32> = (0..1000).map(|i| ((i * 37) % 1000) as f32 * 0.01 - 5.0).collect();
        // What a real GPU gave (H200: 0.66 at worst), spread over the vocabulary.
        let noisy: Vec<f32> = reference.iter().map(|v| v + if *v > 4.5 { 0.66 } else { -0.1 }).collect();
        assert!((self_test_verdict(&reference, &noisy).unwrap() - 0.66).abs() < 1e-4);
        let mut far = reference.clone();
        far[0] -= 3.0; // one logit far off
        assert_eq!(self_test_verdict(&reference, &far).unwrap_err(), "max |Δlogit| 3.000 > 1");
        let mut nan = reference.clone();
        nan[3] = f32::NAN;
        assert_eq!(self_test_verdict(&reference, &nan).unwrap_err(), "non-finite logits");
        assert!(self_test_verdict(&reference, &reference[1..]).is_err());
        assert!(self_test_verdict(&[], &[]).is_err());
        // A near-tie at the top may swap order (int8 vs f32 activations do on the CPU alone).
        let mut swapped = reference.clone();
        let top = swapped.iter().cloned().fold(f32::MIN, f32::max);
        let second = reference.iter().position(|&v| v < top && v > top - 0.5).unwrap();
        swapped[second] = top + 0.05;
        assert!(self_test_verdict(&reference, &swapped).is_ok());
    }
}
