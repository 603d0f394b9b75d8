//! # edgewise (FFI)
//!
//! Thin uniffi wrappers over `edgewise-core` for Kotlin and Swift. No logic lives here: each
//! exported method converts its arguments, calls one core method and converts the result.
//!
//! # Layout
//!
//! | module | what it exports |
//! |---|---|
//! | `error` | `EdgewiseError`, the one error enum, and the one `From<edgewise_core::Error>` |
//! | `types` | records/enums mirroring core's plain data (`GenerationParams`, `Generation`, …) |
//! | `engine` | `Engine` (load, info, new_session) and the core defaults as functions |
//! | `session` | `ChatSession` (chat/complete with a `TokenSink`, tools and tool results, adapters, reset, history) and `CancelToken` (one per call) |
//! | `adapter` | `LoraAdapter` (`Engine.load_adapter`) and `AdapterScale`, a session's adapter set (issue 17) |
//! | `catalog` | the built-in model catalog and `ModelDownload` (fetch with a `DownloadListener`, cancel, verify) |
//! | `router` | the on-device privacy check, the routing policy presets, and `Router` (send with an `AnswerListener`, cancel) |
//! | `session_file` | `ChatSession.save` and `Engine.restore_session`: a chat that survives the app being killed |
//! | `retail` | `Embedder` (sentence embeddings), `VectorIndex` and `Recommender` (issue 15) |
//! | `logging` | `set_log_sink`: the library's `log` records to a Kotlin/Swift `LogSink` (logcat, unified log) |
//!
//! # Quick start (the Rust view of what Kotlin and Swift call)
//!
//! ```no_run
//! use edgewise::*;
//! struct Print;
//! impl TokenSink for Print {
//!     fn on_token(&self, text: String) -> Result<(), EdgewiseError> { print!("{text}"); Ok(()) }
//! }
//! let config = EngineConfig { backend: BackendPreference::Cpu, ..default_engine_config() };
//! let engine = Engine::load("gemma-3-270m-q4_k_m.gguf".into(), config)?;
//! let session = engine.new_session(default_session_config())?;
//! let cancel = CancelToken::new(); // this call's own cancel: cancel.cancel() from any thread
//! let g = session.chat("Name three rivers.".into(), greedy_generation_params(64), std::sync::Arc::new(Print), Some(cancel))?;
//! assert!(privacy_check("Call me on +44 7700 900123".into())?.sensitive);
//! # let _ = g; Ok::<(), EdgewiseError>(())
//! ```
//!
//! Rules (STYLE.md 3–4): proc-macros only; every export returns `Result`; no panic crosses the
//! FFI (core calls run under `catch_unwind`); generation blocks the caller's thread and streams
//! through the foreign trait `TokenSink` on that same thread.
//!
//! Bindings come from the workspace's own `uniffi-bindgen` crate (`uniffi/bindgen`), so the
//! generator always matches this scaffolding (see `android/scripts/generate-bindings.sh` and
//! `ios/build-xcframework.sh`).

uniffi::setup_scaffolding!();

mod adapter;
mod catalog;
mod engine;
mod error;
mod logging;
mod retail;
mod router;
mod session;
mod session_file;
mod types;

pub use adapter::{AdapterScale, LoraAdapter};
pub use catalog::{
    default_fetch_config, default_model, edgewise_home, list_models, model_path, DownloadListener, ModelDownload,
};
pub use engine::{
    default_engine_config, default_generation_params, default_session_config, greedy_generation_params,
    greedy_sampling_params, Engine, TrimLevel, TrimReport,
};
pub use error::{EdgewiseError, EdgewiseResult};
pub use logging::{clear_log_sink, set_log_level, set_log_sink, LogLevel, LogRecord, LogSink};
pub use retail::{
    no_filter, read_catalog_file, AttributeCondition, AttributeValue, CatalogItem, Embedder, EmbeddingWeights,
    IndexHit, Recommendation, Recommender, SearchFilter, ShopperEvent, ShopperEventKind, VectorIndex, VectorStorage,
};
pub use router::{
    default_cloud_endpoint, privacy_check, router_policy_cloud_assist, router_policy_field_worker,
    router_policy_local_only, AnswerListener, Router,
};
pub use session::{CancelToken, ChatSession, TokenSink};
pub use types::*;
