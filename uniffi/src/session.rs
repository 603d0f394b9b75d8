//! `ChatSession`: a conversation with its own KV cache, streaming through a host-implemented
//! [`TokenSink`], and `CancelToken`, the per-call cancel handle.
//!
//! Generation is blocking and calls the sink on the caller's thread (the host calls it from
//! `Dispatchers.IO` / a dedicated queue; JNA then attaches that thread to the JVM once, not per
//! token). Each call can be given its own [`CancelToken`], created by the host *before* the call:
//! cancelling it stops that call only, also when it fires before the native call starts.
//! `ChatSession::cancel()` stops whichever call holds the session now. A second generation on a
//! busy session fails with `EdgewiseError::Busy` instead of blocking, unless the running one was
//! cancelled: then the new call waits for it to unwind (at most 10 s; core's `UNWIND_WAIT`).

use std::sync::Arc;

use edgewise_core::session::{self as css, CancelHandle};

use crate::adapter::AdapterScale;
use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::types::{
    core_tools, to_i32, ChatMessage, Generation, GenerationParams, SessionConfig, Tool, ToolChoice, ToolResult,
};

/// Receives generated text as it is produced. Implemented in Kotlin or Swift.
#[uniffi::export(foreign)]
pub trait TokenSink: Send + Sync {
    /// A piece of generated text (whole UTF-8 characters; stop sequences already removed).
    /// Throwing stops the generation, and the call fails with the thrown error.
    fn on_token(&self, text: String) -> Result<(), EdgewiseError>;
}

/// Cancels one call (a generation or a routed request). Create one per call, before the call,
/// and pass it in; `cancel()` from any thread stops that call before its next token (or before
/// it starts) and never touches another. It is never reset: use a new token for the next call.
#[derive(uniffi::Object, Debug, Default)]
pub struct CancelToken {
    handle: CancelHandle,
}

/// The core handle for an optional token (a fresh, private one when the host gave none).
pub(crate) fn handle_of(token: Option<Arc<CancelToken>>) -> CancelHandle {
    token.map(|t| t.handle.clone()).unwrap_or_default()
}

#[uniffi::export]
impl CancelToken {
    /// A token that is not cancelled.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Requests cancellation. Safe from any thread, any number of times.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// Whether `cancel()` was called.
    pub fn is_cancelled(&self) -> bool {
        self.handle.is_cancelled()
    }
}

/// A conversation with its own KV cache. Thread-safe; one generation at a time.
#[derive(uniffi::Object)]
pub struct ChatSession {
    inner: Arc<css::SharedSession>,
}

impl ChatSession {
    pub(crate) fn new(session: css::Session) -> Self {
        Self { inner: css::SharedSession::new(session) }
    }

    /// Runs a call that does not generate (`Busy` while a live generation holds the session).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut css::Session) -> T) -> EdgewiseResult<T> {
        Ok(self.inner.run(&CancelHandle::new(), f)?)
    }

    /// Runs one core generation with `sink` as the streaming callback, as the call of `cancel`.
    fn run(
        &self,
        what: &str,
        cancel: CancelHandle,
        sink: Arc<dyn TokenSink>,
        generate: impl FnOnce(
            &mut css::Session,
            &CancelHandle,
            &mut dyn FnMut(&str) -> bool,
        ) -> edgewise_core::Result<css::Generation>,
    ) -> EdgewiseResult<Generation> {
        guard(what, || {
            self.inner.run(&cancel, |session| {
                let mut failure: Option<EdgewiseError> = None;
                let mut forward = |piece: &str| match sink.on_token(piece.to_string()) {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                };
                let generation = generate(session, &cancel, &mut forward);
                match failure {
                    Some(e) => Err(e),
                    None => Ok(generation?.into()),
                }
            })?
        })
        // A panic inside `run` poisons the session's lock; the next call resets the session
        // (core's SharedSession) rather than trusting a half-written KV cache.
    }
}

#[uniffi::export]
impl ChatSession {
    /// Sends a user message and streams the answer into `sink`; both join the history.
    /// Blocking: call it from a background thread. Returns when the answer is complete, was
    /// cancelled (`stop_reason == Cancelled`; a call cancelled before it generated anything
    /// leaves the history unchanged) or failed. `cancel`: this call's own token (see
    /// [`CancelToken`]).
    #[uniffi::method(default(cancel = None))]
    pub fn chat(
        &self,
        message: String,
        params: GenerationParams,
        sink: Arc<dyn TokenSink>,
        cancel: Option<Arc<CancelToken>>,
    ) -> EdgewiseResult<Generation> {
        let params = params.into();
        self.run("ChatSession.chat", handle_of(cancel), sink, |s, c, f| s.chat_with(&message, &params, c, f))
    }

    /// Raw completion of `prompt` (no chat template; the history is not used or changed).
    /// Blocking, like [`ChatSession::chat`].
    #[uniffi::method(default(cancel = None))]
    pub fn complete(
        &self,
        prompt: String,
        params: GenerationParams,
        sink: Arc<dyn TokenSink>,
        cancel: Option<Arc<CancelToken>>,
    ) -> EdgewiseResult<Generation> {
        let params = params.into();
        self.run("ChatSession.complete", handle_of(cancel), sink, |s, c, f| s.complete_with(&prompt, &params, c, f))
    }

    /// Sends the results of the calls of the last answer (`Generation.tool_calls`, echoing each
    /// call's `id` and `name`) as the next turn and streams the model's answer: text, or more
    /// calls. The cached conversation is reused (only the results are prefilled). Blocking, like
    /// [`ChatSession::chat`]. `InvalidParameter` for an empty list.
    #[uniffi::method(default(cancel = None))]
    pub fn send_tool_results(
        &self,
        results: Vec<ToolResult>,
        params: GenerationParams,
        sink: Arc<dyn TokenSink>,
        cancel: Option<Arc<CancelToken>>,
    ) -> EdgewiseResult<Generation> {
        let params = params.into();
        let results: Vec<_> = results.into_iter().map(Into::into).collect();
        self.run("ChatSession.send_tool_results", handle_of(cancel), sink, |s, c, f| {
            s.send_tool_results_with(&results, &params, c, f)
        })
    }

    /// Offers `tools` in the following chats: each answer is then text or calls
    /// (`Generation.tool_calls`, arguments valid against the tool's schema), as `choice` allows.
    /// Gemma 3 sees them in the built-in prompt format (README). Changing the tools re-prefills
    /// the conversation on the next turn; keep them fixed for a conversation.
    /// `InvalidConstraint` for unusable tools (see the error); `Busy` while a generation runs.
    pub fn set_tools(&self, tools: Vec<Tool>, choice: ToolChoice) -> EdgewiseResult<()> {
        guard("ChatSession.set_tools", || {
            let tools = core_tools(tools, choice)?;
            Ok(self.with(|s| s.set_tools(Some(tools)))??)
        })
    }

    /// Stops offering tools. `Busy` while a generation runs.
    pub fn clear_tools(&self) -> EdgewiseResult<()> {
        guard("ChatSession.clear_tools", || Ok(self.with(|s| s.set_tools(None))??))
    }

    /// Runs the following turns with these LoRA adapters and scales (empty: the base model).
    /// A set other than the current one empties the KV cache, so nothing computed under another
    /// set is ever reused (the conversation stays and is prefilled again on the next turn).
    /// `Adapter` for an adapter loaded by an engine of another model; `InvalidParameter` for a
    /// non-finite scale; `Busy` while a generation runs.
    pub fn set_adapters(&self, adapters: Vec<AdapterScale>) -> EdgewiseResult<()> {
        guard("ChatSession.set_adapters", || {
            let set: Vec<_> = adapters.into_iter().map(|a| (a.adapter.inner.clone(), a.scale)).collect();
            Ok(self.with(|s| s.set_adapters(&set))??)
        })
    }

    /// Stops the generation holding the session now, before its next token. Safe from any
    /// thread; a no-op when nothing runs (a later generation is not affected). To stop one
    /// particular call, also before it starts, cancel that call's [`CancelToken`] instead.
    pub fn cancel(&self) -> EdgewiseResult<()> {
        self.inner.cancel_running();
        Ok(())
    }

    /// Forgets the conversation and the cache. `Busy` while a generation runs.
    pub fn reset(&self) -> EdgewiseResult<()> {
        self.with(|s| s.reset())
    }

    /// The conversation so far. `Busy` while a generation runs.
    pub fn history(&self) -> EdgewiseResult<Vec<ChatMessage>> {
        self.with(|s| s.history().iter().cloned().map(Into::into).collect())
    }

    /// Tokens currently held in the KV cache. `Busy` while a generation runs.
    pub fn cached_tokens(&self) -> EdgewiseResult<i32> {
        self.with(|s| to_i32(s.cached_tokens()))
    }

    /// The session's settings. `Busy` while a generation runs.
    pub fn config(&self) -> EdgewiseResult<SessionConfig> {
        self.with(|s| s.config().clone().into())
    }
}
