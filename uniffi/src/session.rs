//! `ChatSession`: a conversation with its own KV cache, streaming through a host-implemented
//! [`TokenSink`].
//!
//! Generation is blocking and calls the sink on the caller's thread (the host calls it from
//! `Dispatchers.IO` / `Task.detached`; JNA then attaches that thread to the JVM once, not per
//! token). `cancel()` flips core's atomic flag, which lives outside the session's mutex, so it
//! works while a generation holds the lock. A second generation on a busy session fails with
//! `EdgewiseError::Busy` instead of blocking.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use edgewise_core::session::{self as css, CancelHandle};

use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::types::{to_u32, ChatMessage, Generation, GenerationParams, SessionConfig};

/// Receives generated text as it is produced. Implemented in Kotlin or Swift.
#[uniffi::export(foreign)]
pub trait TokenSink: Send + Sync {
    /// A piece of generated text (whole UTF-8 characters; stop sequences already removed).
    /// Throwing stops the generation, and the call fails with the thrown error.
    fn on_token(&self, text: String) -> Result<(), EdgewiseError>;
}

/// A conversation with its own KV cache. Thread-safe; one generation at a time.
#[derive(uniffi::Object)]
pub struct ChatSession {
    inner: Mutex<css::Session>,
    cancel: CancelHandle,
}

impl ChatSession {
    pub(crate) fn new(session: css::Session) -> Self {
        let cancel = session.cancel_handle();
        Self { inner: Mutex::new(session), cancel }
    }

    /// The session, or `Busy` while another call holds it (never blocks).
    fn lock(&self) -> EdgewiseResult<MutexGuard<'_, css::Session>> {
        match self.inner.try_lock() {
            Ok(session) => Ok(session),
            Err(TryLockError::WouldBlock) => Err(EdgewiseError::Busy),
            // Panics are caught inside the lock (see `run`), so this is not expected; if it
            // happens anyway, start the conversation over rather than trust a half-updated cache.
            Err(TryLockError::Poisoned(p)) => {
                let mut session = p.into_inner();
                session.reset();
                self.inner.clear_poison();
                log::warn!("session recovered from a poisoned lock; its history was reset");
                Ok(session)
            }
        }
    }

    /// Runs one core generation with `sink` as the streaming callback.
    fn run(
        &self,
        what: &str,
        sink: Arc<dyn TokenSink>,
        generate: impl FnOnce(&mut css::Session, &mut dyn FnMut(&str) -> bool) -> edgewise_core::Result<css::Generation>,
    ) -> EdgewiseResult<Generation> {
        let mut session = self.lock()?;
        let result = guard(what, || {
            let mut failure: Option<EdgewiseError> = None;
            let mut forward = |piece: &str| match sink.on_token(piece.to_string()) {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            };
            let generation = generate(&mut session, &mut forward);
            match failure {
                Some(e) => Err(e),
                None => Ok(generation?.into()),
            }
        });
        if matches!(&result, Err(EdgewiseError::Internal { .. })) {
            // A panic may have left the KV cache half-written: start over.
            session.reset();
        }
        result
    }
}

#[uniffi::export]
impl ChatSession {
    /// Sends a user message and streams the answer into `sink`; both join the history.
    /// Blocking: call it from a background thread. Returns when the answer is complete, was
    /// cancelled (`stop_reason == Cancelled`) or failed.
    pub fn chat(&self, message: String, params: GenerationParams, sink: Arc<dyn TokenSink>) -> EdgewiseResult<Generation> {
        let params = params.into();
        self.run("ChatSession.chat", sink, |s, f| s.chat(&message, &params, f))
    }

    /// Raw completion of `prompt` (no chat template; the history is not used or changed).
    /// Blocking, like [`ChatSession::chat`].
    pub fn complete(&self, prompt: String, params: GenerationParams, sink: Arc<dyn TokenSink>) -> EdgewiseResult<Generation> {
        let params = params.into();
        self.run("ChatSession.complete", sink, |s, f| s.complete(&prompt, &params, f))
    }

    /// Stops the running generation before its next token. Safe from any thread; a no-op when
    /// nothing runs (a later generation is not affected).
    pub fn cancel(&self) -> EdgewiseResult<()> {
        self.cancel.cancel();
        Ok(())
    }

    /// Forgets the conversation and the cache. `Busy` while a generation runs.
    pub fn reset(&self) -> EdgewiseResult<()> {
        self.lock()?.reset();
        Ok(())
    }

    /// The conversation so far. `Busy` while a generation runs.
    pub fn history(&self) -> EdgewiseResult<Vec<ChatMessage>> {
        Ok(self.lock()?.history().iter().cloned().map(Into::into).collect())
    }

    /// Tokens currently held in the KV cache. `Busy` while a generation runs.
    pub fn cached_tokens(&self) -> EdgewiseResult<u32> {
        Ok(to_u32(self.lock()?.cached_tokens()))
    }

    /// The session's settings.
    pub fn config(&self) -> EdgewiseResult<SessionConfig> {
        Ok(self.lock()?.config().clone().into())
    }
}
