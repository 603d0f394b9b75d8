//! Session files (issue 16): `ChatSession.save(path)` and `Engine.restoreSession(path)`, so a chat
//! survives the app being killed and continues without prefilling its history again. The format
//! and its checks live in core (`edgewise_core::session_file`); these are one-call wrappers.

use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{guard, EdgewiseResult};
use crate::session::ChatSession;

#[uniffi::export]
impl ChatSession {
    /// Saves the conversation and its KV cache to `path` (a file in app-private storage: it holds
    /// the conversation's text). Crash-safe: written to a temporary file, synced, then renamed
    /// over `path`. `Busy` while a generation runs. Gemma 3 270M on the CPU backend: 18 KB per
    /// cached token for the first 767, 3 KB after (14 MiB for 1,000); twice that on the GPU.
    pub fn save(&self, path: String) -> EdgewiseResult<()> {
        guard("ChatSession.save", || Ok(self.with(|s| s.save(&path))??))
    }
}

#[uniffi::export]
impl Engine {
    /// A session restored from a file written by `ChatSession.save`: its settings, conversation
    /// and KV cache, so the next turn prefills only the new message and answers as the original
    /// session would have. A file saved with another model fails with `SessionModelMismatch`; a
    /// damaged, truncated, foreign or newer-format file with `SessionFile`. Blocking (reads the
    /// file: tens of MB for a long chat): call it from a background thread.
    pub fn restore_session(&self, path: String) -> EdgewiseResult<Arc<ChatSession>> {
        guard("Engine.restore_session", || Ok(Arc::new(ChatSession::new(self.core().restore_session(&path)?))))
    }

    /// The loaded model's identity (64 hex digits), which session files record: a file restores
    /// only into an engine with the same id.
    pub fn model_id(&self) -> EdgewiseResult<String> {
        Ok(self.core().model_id().to_string())
    }
}
