//! `LoraAdapter`: a LoRA adapter loaded for one engine's model (llama.cpp's GGUF adapter format),
//! chosen per session with `ChatSession.set_adapters` (issue 17).

use std::sync::Arc;

use edgewise_core::lora as cl;

use crate::engine::Engine;
use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::types::{to_i32, to_i64};

/// A loaded LoRA adapter (a few MB; f32 matrices in memory). Share it between sessions: each
/// picks its adapters and their scales; the base weights are never changed.
#[derive(uniffi::Object, Debug)]
pub struct LoraAdapter {
    pub(crate) inner: Arc<cl::LoraAdapter>,
}

#[uniffi::export]
impl LoraAdapter {
    /// `adapter.lora.alpha` (0 when the file has none).
    pub fn alpha(&self) -> f32 {
        self.inner.alpha()
    }

    /// The largest rank of its weights.
    pub fn rank(&self) -> i32 {
        to_i32(self.inner.rank())
    }

    /// How many weight matrices it adapts.
    pub fn weights(&self) -> i32 {
        to_i32(self.inner.weights())
    }

    /// Bytes of its matrices in memory.
    pub fn size_bytes(&self) -> i64 {
        to_i64(self.inner.size_bytes() as u64)
    }
}

/// One adapter of a session's set, with its scale (1.0 = as trained; 0 leaves it out).
#[derive(uniffi::Record, Debug, Clone)]
pub struct AdapterScale {
    /// The adapter (loaded by the session's engine).
    pub adapter: Arc<LoraAdapter>,
    /// Its scale (finite).
    pub scale: f32,
}

#[uniffi::export]
impl Engine {
    /// Loads the LoRA adapter at `path` for this engine's model. A file that is not a GGUF LoRA
    /// adapter for this architecture and size (garbage, a model file, missing or mis-shaped
    /// tensors, non-finite values) is `EdgewiseError::Adapter`; an unreadable path is `Io`.
    /// Blocking (reads the file): call it from a background thread.
    pub fn load_adapter(&self, path: String) -> EdgewiseResult<Arc<LoraAdapter>> {
        guard("Engine.load_adapter", || match self.core().load_adapter(&path) {
            Ok(inner) => Ok(Arc::new(LoraAdapter { inner })),
            Err(edgewise_core::Error::Io(e)) => Err(e.into()),
            // Whatever the GGUF reader found wrong is a bad adapter file here, not a bad model.
            Err(e) => Err(match EdgewiseError::from(e) {
                EdgewiseError::ModelLoad { reason } | EdgewiseError::UnsupportedModel { reason } => {
                    EdgewiseError::Adapter { reason }
                }
                other => other,
            }),
        })
    }
}
