//! `Engine`: a loaded model that creates chat sessions, plus the core defaults as functions.

use std::sync::Arc;

use edgewise_core::{engine as ce, memory as cm, sampling as cs, session as css};

use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::session::ChatSession;
use crate::types::{to_usize, EngineConfig, EngineInfo, GenerationParams, SamplingParams, SessionConfig};

/// A loaded model (about 250 MB for Gemma 3 270M): load it once, share it, and `close()` it
/// when done rather than waiting for the garbage collector. Thread-safe.
#[derive(uniffi::Object)]
pub struct Engine {
    inner: ce::Engine,
}

impl Engine {
    /// The core engine (for the router).
    pub(crate) fn core(&self) -> &ce::Engine {
        &self.inner
    }
}

#[uniffi::export]
impl Engine {
    /// Loads a GGUF model. Blocking (seconds): call it from a background thread.
    #[uniffi::constructor]
    pub fn load(path: String, config: EngineConfig) -> EdgewiseResult<Arc<Self>> {
        guard("Engine.load", || Ok(Arc::new(Self { inner: ce::Engine::load(path, config.into())? })))
    }

    /// Loads the GGUF model in `length` bytes (to the end of the file when negative) at `offset` of
    /// the open file descriptor `fd`: an Android asset stored uncompressed
    /// (`AssetFileDescriptor`: `parcelFileDescriptor.fd`, `startOffset`, `length`) or a content
    /// URI (`ParcelFileDescriptor.fd`, 0, -1). The descriptor is checked and duplicated: close
    /// yours when this returns. `InvalidParameter` (`fd`) for a closed or negative descriptor,
    /// `ModelLoad` for a region outside the file or one that is not a GGUF model. Blocking, like
    /// [`Engine::load`]. Unix (Android, iOS, Linux, macOS) only.
    #[uniffi::constructor]
    pub fn load_fd(fd: i32, offset: i64, length: i64, config: EngineConfig) -> EdgewiseResult<Arc<Self>> {
        guard("Engine.load_fd", || {
            let offset = u64::try_from(offset).map_err(|_| EdgewiseError::InvalidParameter {
                name: "offset".into(),
                reason: "must not be negative".into(),
            })?;
            let length = u64::try_from(length).ok();
            Ok(Arc::new(Self { inner: ce::Engine::load_fd(fd, offset, length, config.into())? }))
        })
    }

    /// What was loaded and where it runs.
    pub fn info(&self) -> EdgewiseResult<EngineInfo> {
        Ok(self.inner.info().clone().into())
    }

    /// A new chat session with its own KV cache. Sessions of one engine can run concurrently.
    pub fn new_session(&self, config: SessionConfig) -> EdgewiseResult<Arc<ChatSession>> {
        guard("Engine.new_session", || Ok(Arc::new(ChatSession::new(self.inner.new_session(config.into())?))))
    }

    /// Builds constrained decoding's token trie (JSON Schema, regex and grammar output) on a
    /// background thread now, so that the first constrained request does not wait for it (about
    /// a second for a 262k vocabulary). Returns at once; optional (the first constrained request
    /// builds it otherwise).
    pub fn prepare_constraints(&self) -> EdgewiseResult<()> {
        guard("Engine.prepare_constraints", || {
            self.inner.prepare_constraints();
            Ok(())
        })
    }

    /// Hands memory back under pressure (Android `onTrimMemory`, iOS memory warnings; the
    /// Kotlin `EdgewiseMemory` and Swift `EdgewiseMemory` helpers map the system's levels).
    /// Whatever is in use is skipped; everything freed comes back on the next use, and answers
    /// do not change. Safe from any thread.
    pub fn trim(&self, level: TrimLevel) -> EdgewiseResult<TrimReport> {
        guard("Engine.trim", || Ok(self.inner.trim(level.into()).into()))
    }
}

/// How much memory [`Engine::trim`] hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TrimLevel {
    /// The UI is hidden: the KV caches of idle sessions (their conversations stay; the next turn
    /// prefills them again) and the router's pooled sessions.
    Background,
    /// Memory is running low: also the tokenizer's cache, constrained decoding's token trie
    /// (built again by the next constrained request) and the allocator's free memory.
    Low,
    /// The process may be killed next: also the model's weight pages (CPU backend: read again
    /// from the file on the next generation).
    Critical,
}

impl From<TrimLevel> for cm::TrimLevel {
    fn from(v: TrimLevel) -> Self {
        match v {
            TrimLevel::Background => Self::Background,
            TrimLevel::Low => Self::Low,
            TrimLevel::Critical => Self::Critical,
        }
    }
}

/// What [`Engine::trim`] handed back.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TrimReport {
    /// KV-cache bytes released.
    pub kv_cache_bytes: i64,
    /// Sessions whose cache was released.
    pub sessions: i32,
    /// Whether the model's weight pages were handed back.
    pub weights_released: bool,
}

impl From<cm::TrimReport> for TrimReport {
    fn from(v: cm::TrimReport) -> Self {
        Self {
            kv_cache_bytes: i64::try_from(v.kv_cache_bytes).unwrap_or(i64::MAX),
            sessions: i32::try_from(v.sessions).unwrap_or(i32::MAX),
            weights_released: v.weights_released,
        }
    }
}

// The defaults and presets below do not return `Result`, unlike every other export: they only
// copy core's constants (no I/O, nothing to validate, nothing that can panic), so Swift gets them
// without `try` (issue 16). What they return is validated where it is used.

/// Core's default engine settings (`Auto` backend with the GPU self-test, all cores).
#[uniffi::export]
pub fn default_engine_config() -> EngineConfig {
    ce::EngineConfig::default().into()
}

/// Core's default session settings.
#[uniffi::export]
pub fn default_session_config() -> SessionConfig {
    css::SessionConfig::default().into()
}

/// Core's default generation settings (sampling with temperature, 256 tokens).
#[uniffi::export]
pub fn default_generation_params() -> GenerationParams {
    css::GenerationParams::default().into()
}

/// Greedy (deterministic) decoding for at most `max_tokens` tokens (checked when generating:
/// 1..=1048576).
#[uniffi::export]
pub fn greedy_generation_params(max_tokens: i32) -> GenerationParams {
    css::GenerationParams::greedy(to_usize(max_tokens)).into()
}

/// Argmax sampling with no penalties.
#[uniffi::export]
pub fn greedy_sampling_params() -> SamplingParams {
    cs::SamplingParams::greedy().into()
}
