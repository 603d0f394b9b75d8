//! Sessions: prompt → prefill → decode loop → stop conditions, with streaming and cancel.
//!
//! ```no_run
//! # use edgewise_core::{engine::{Engine, EngineConfig}, session::{CancelHandle, GenerationParams, SessionConfig}};
//! let engine = Engine::load("gemma-3-270m-q4_k_m.gguf", EngineConfig::default())?;
//! let mut s = engine.new_session(SessionConfig::default())?;
//! let cancel = CancelHandle::new(); // this call's handle: cancel.cancel() from any thread stops it
//! let out = s.chat_with("Name three rivers.", &GenerationParams::default(), &cancel, &mut |piece: &str| {
//!     print!("{piece}");
//!     true // keep going
//! })?;
//! println!("\n{:?} after {} tokens", out.stop_reason, out.token_ids.len());
//! # Ok::<(), edgewise_core::Error>(())
//! ```
//!
//! A session owns its KV cache. In a chat, each new turn renders the whole conversation, finds
//! the longest prefix already in the cache and prefills only the rest, so history is not
//! prefilled again.
//!
//! **Cancellation is per call.** Each generation is given its own [`CancelHandle`], taken by
//! the caller *before* the call (`chat_with`, `complete_with`, `generate_from_with`): a cancel
//! that arrives before the call starts, or while the prompt is rendered and tokenized, is
//! honoured (the call returns [`StopReason::Cancelled`] at once), and cancelling one call never
//! touches another. [`SharedSession`] puts a session behind a lock for bindings and servers: a
//! second call while a generation runs fails with [`Error::Busy`], but a call that finds a
//! *cancelled* generation still unwinding waits for it (at most [`UNWIND_WAIT`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::kv_cache::KvCache;
use crate::memory::{TrimLevel, TrimReport, Trimmable};
use crate::model::{MaskedPick, StepLogits, TopLogits};
use crate::sampling::{Sampler, SamplingParams};
use crate::structured::tools::{ToolCall, ToolFormat, ToolResult, Tools};
use crate::structured::OutputConstraint;
use crate::tokenizer::{ChatMessage, Role};
use crate::{Error, Result};

/// What to do when a conversation no longer fits the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Fail with [`Error::ContextOverflow`].
    #[default]
    Error,
    /// Drop the oldest turns (the system prompt stays) until the prompt fits.
    DropOldestTurns,
}

/// What one model step hands the sampling loop.
enum Next {
    /// The vocabulary's logits for the sampler.
    Logits(Vec<f32>),
    /// A greedy pick (token, log-probability) made by the model itself.
    Picked((u32, f32)),
    /// The largest logits, selected by the model (on its device) for the sampler.
    Top(TopLogits),
}

/// Per-session settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Context size in tokens (prompt + answer). Memory grows with this, not with the model's maximum.
    pub max_context: usize,
    /// Tokens per prefill pass.
    pub prefill_chunk: usize,
    /// System prompt for chats.
    pub system_prompt: Option<String>,
    /// What to do on overflow.
    pub overflow: OverflowPolicy,
    /// A hybrid model's (Qwen 3.5's) turn-boundary copies of its recurrent state, which cannot
    /// be cut back to an earlier token: how many the session keeps (default 4, at most 64; each
    /// is a copy of the whole state, ~19 MiB for Qwen 3.5 0.8B). The earliest (where the
    /// messages start) and the newest are kept; with 0 a turn that does not extend the cached
    /// tokens prefills from the start. Plain transformers keep none and ignore it.
    pub state_checkpoints: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_context: 2048,
            prefill_chunk: 256,
            system_prompt: None,
            overflow: OverflowPolicy::Error,
            state_checkpoints: crate::kv_cache::MAX_RECURRENT_CHECKPOINTS,
        }
    }
}

impl SessionConfig {
    /// Rejects absurd values.
    pub fn validate(&self, model_max: usize) -> Result<()> {
        if self.max_context < 16 || self.max_context > model_max {
            return Err(Error::InvalidParameter {
                name: "max_context",
                reason: format!("must be in 16..={model_max}"),
            });
        }
        if self.prefill_chunk == 0 || self.prefill_chunk > 4096 {
            return Err(Error::InvalidParameter { name: "prefill_chunk", reason: "must be in 1..=4096".into() });
        }
        crate::check_input_len(self.system_prompt.as_ref().map_or(0, String::len))?;
        if self.state_checkpoints > crate::kv_cache::RECURRENT_CHECKPOINTS_LIMIT {
            return Err(Error::InvalidParameter {
                name: "state_checkpoints",
                reason: format!("must be in 0..={}", crate::kv_cache::RECURRENT_CHECKPOINTS_LIMIT),
            });
        }
        Ok(())
    }
}

/// Per-generation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationParams {
    /// Sampling.
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Stop when the output contains any of these (the stop text is not emitted).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks only; not with a constraint, whose
    /// grammar decides where the output ends).
    pub ignore_eos: bool,
    /// What the output must look like: free text (default), or JSON for a schema, a regex match,
    /// a grammar's language ([`crate::structured`]). Compiled before any token is generated.
    pub constraint: OutputConstraint,
    /// The chat template's `enable_thinking` for chat turns (Qwen 3 / 3.5 read it; `None`: not
    /// set, the template's default, which thinks). `Some(false)`: the template prints its empty
    /// `<think>` block and a tool-call answer may not think
    /// ([`crate::structured::tools::Thinking`]). Other templates ignore it.
    pub enable_thinking: Option<bool>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            stop: Vec::new(),
            ignore_eos: false,
            constraint: OutputConstraint::Text,
            enable_thinking: None,
        }
    }
}

impl GenerationParams {
    /// Greedy decoding for `max_tokens`.
    pub fn greedy(max_tokens: usize) -> Self {
        Self { sampling: SamplingParams::greedy(), max_tokens, ..Self::default() }
    }

    /// Rejects absurd values.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        if self.max_tokens == 0 || self.max_tokens > 1 << 20 {
            return Err(Error::InvalidParameter { name: "max_tokens", reason: "must be in 1..=1048576".into() });
        }
        if self.stop.iter().any(|s| s.is_empty()) || self.stop.len() > 16 {
            return Err(Error::InvalidParameter { name: "stop", reason: "at most 16 non-empty sequences".into() });
        }
        self.constraint.validate()
    }
}

/// Where the answer to a prompt of `ids` stands on thinking
/// ([`crate::structured::tools::Thinking::at_prompt_end`]: whether the engine's template thinks,
/// and the prompt's last tokens), with `max_tokens` to answer.
pub(crate) fn thinking_after(engine: &Engine, ids: &[u32], max_tokens: usize) -> crate::structured::tools::Thinking {
    let thinks = engine.template().thinks();
    let tail = if thinks {
        engine.tokenizer().decode(&ids[ids.len().saturating_sub(8)..], false).unwrap_or_default()
    } else {
        String::new()
    };
    crate::structured::tools::Thinking::at_prompt_end(thinks, &tail, max_tokens)
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop sequence appeared.
    StopSequence,
    /// `max_tokens` were generated (`"length"` in JSON, as OpenAI's `finish_reason`).
    #[serde(rename = "length", alias = "max_tokens")]
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// Cancelled through the handle or by the sink.
    Cancelled,
}

/// Timing and counts of one generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Prompt tokens of this request.
    pub prompt_tokens: usize,
    /// Of those, tokens actually prefilled (the rest were reused from the cache).
    pub prefilled_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time to the first generated token.
    pub ttft_ms: f64,
    /// Prefill throughput.
    pub prefill_tokens_per_s: f64,
    /// Decode throughput (tokens after the first).
    pub decode_tokens_per_s: f64,
    /// Whole request.
    pub total_ms: f64,
    /// Oldest messages dropped so that the conversation fits ([`OverflowPolicy::DropOldestTurns`]);
    /// the tokens after the system prompt were then prefilled again (`prefilled_tokens`).
    #[serde(default)]
    pub dropped_messages: usize,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (stop sequences removed).
    pub text: String,
    /// The generated token ids.
    pub token_ids: Vec<u32>,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Mean log-probability of the generated tokens (a confidence signal for the router).
    pub mean_logprob: f32,
    /// Timing.
    pub metrics: Metrics,
    /// With an output constraint: whether the text is a complete match of it (the constraint
    /// accepted it and the generation ended by itself). Never `true` after `max_tokens`
    /// (`length`), a full context, a stop sequence or a cancel. `None` for free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// With a JSON Schema constraint and a valid result: the parsed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// With tools ([`Session::set_tools`]): the calls the answer makes (empty for a text answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// Cancels one generation (or one routed request) from any thread. Take a new one for each
/// call, before the call: it is never cleared, so a cancel that arrives before the work starts
/// is honoured, and clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A handle that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation; the work stops before its next prefill chunk or token (or does not
    /// start).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Whether `self` and `other` are clones of one handle.
    pub fn same_as(&self, other: &CancelHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The handles of the calls running now, so that one "cancel everything" (a session's or a
/// router's `cancel()`) reaches each of them, and only them: a call registers its handle for
/// its duration ([`CancelGroup::register`]); calls registered later are not affected.
#[derive(Debug, Default)]
pub struct CancelGroup {
    running: Mutex<HashMap<u64, CancelHandle>>,
    next: AtomicU64,
}

/// Keeps a handle in its [`CancelGroup`] until dropped.
#[derive(Debug)]
pub struct Registration<'a> {
    group: &'a CancelGroup,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.group.running).remove(&self.id);
    }
}

impl CancelGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handle` until the returned registration is dropped.
    pub fn register(&self, handle: &CancelHandle) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock_ignoring_poison(&self.running).insert(id, handle.clone());
        Registration { group: self, id }
    }

    /// Cancels every registered handle.
    pub fn cancel_all(&self) {
        for h in lock_ignoring_poison(&self.running).values() {
            h.cancel();
        }
    }

    /// How many calls are registered now.
    pub fn len(&self) -> usize {
        lock_ignoring_poison(&self.running).len()
    }

    /// Whether no call is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// For maps of handles, which a panic cannot leave half-updated.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A conversation with its own KV cache.
pub struct Session {
    engine: Engine,
    cfg: SessionConfig,
    cache: KvCache,
    /// Exactly the tokens held by `cache`.
    cached: Vec<u32>,
    history: Vec<ChatMessage>,
    /// Beside each history message: the token ids the model sampled for it (its answers), so the
    /// next turn's prompt holds exactly what the cache holds ([`ChatTemplate::encode_known`]).
    ///
    /// [`ChatTemplate::encode_known`]: crate::tokenizer::ChatTemplate::encode_known
    history_ids: Vec<Option<Vec<u32>>>,
    cancel: CancelHandle,
    /// Tools offered in chats, and how many chat turns used them (call ids).
    tools: Option<Tools>,
    tool_turns: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cfg", &self.cfg)
            .field("cached_tokens", &self.cached.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(engine: Engine, cfg: SessionConfig) -> Result<Self> {
        cfg.validate(engine.model().max_context())?;
        let mut cache = engine.model().new_cache(cfg.max_context, cfg.prefill_chunk)?;
        cache.set_max_checkpoints(cfg.state_checkpoints);
        log::debug!("session: context {}, kv cache {} KiB", cfg.max_context, cache.size_bytes() >> 10);
        Ok(Self {
            engine,
            cfg,
            cache,
            cached: Vec::new(),
            history: Vec::new(),
            history_ids: Vec::new(),
            cancel: CancelHandle::default(),
            tools: None,
            tool_turns: 0,
        })
    }

    /// The session-wide handle used by [`Session::chat`], [`Session::complete`] and
    /// [`Session::generate_from`]: it cancels the one of those calls running now. Those calls
    /// clear it on entry, so a cancel sent while none runs is dropped; to cancel reliably (also
    /// before the call starts), give each call its own handle with the `_with` variants.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The conversation so far.
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Tokens currently in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.cached.len()
    }

    /// The token ids the KV cache holds now (the last prompt, then the answer's tokens that were
    /// fed back), for tools and tests.
    pub fn cached_token_ids(&self) -> &[u32] {
        &self.cached
    }

    /// Whether the model keeps a recurrent state (Qwen 3.5), which a chat turn checkpoints at
    /// the points where later prompts may depart ([`Session::chat_with`]).
    pub(crate) fn is_recurrent(&self) -> bool {
        self.cache.is_recurrent()
    }

    /// Bytes the KV cache holds now (0 after [`Session::release_cache`], until the next turn).
    pub fn cache_bytes(&self) -> usize {
        self.cache.size_bytes()
    }

    /// Runs the next turns with these LoRA adapters and scales (`llama_set_adapters_lora`; an
    /// empty list: the base model; scale 0 drops an adapter). A set other than the current one
    /// empties the KV cache, so nothing computed under another set is reused (the conversation
    /// stays and is prefilled again). Adapters loaded for another model are [`Error::Adapter`].
    pub fn set_adapters(&mut self, adapters: &[(Arc<crate::lora::LoraAdapter>, f32)]) -> Result<()> {
        self.set_adapter_set(crate::lora::LoraSet::new(adapters)?)
    }

    /// The adapters the next turns run with.
    pub fn adapters(&self) -> &crate::lora::LoraSet {
        self.cache.adapters()
    }

    /// [`Session::set_adapters`] with a set built already (a router request's).
    pub fn set_adapter_set(&mut self, set: crate::lora::LoraSet) -> Result<()> {
        if let Some(cfg) = self.engine.model().decoder_config() {
            set.check(cfg)?;
        }
        if self.cache.set_adapters(set) {
            self.cached.clear();
        }
        Ok(())
    }

    /// Forgets the conversation and the cache.
    pub fn reset(&mut self) {
        self.history.clear();
        self.history_ids.clear();
        self.cached.clear();
        self.cache.reset();
    }

    /// Offers `tools` in the following chat turns (`None` removes them). A chat template that
    /// takes tools (Qwen 2.5/3, Llama 3.x: [`ToolFormat`]) shows them and the calls and results
    /// in the model's own format; otherwise they are described in the system prompt (the
    /// built-in format of [`crate::structured::tools`]). A chat answer is then text or calls,
    /// constrained by the tool choice, and [`Generation::tool_calls`] holds the calls. Changing the tools changes the prompt's start, so the next turn prefills
    /// the conversation again; keep them fixed for a conversation to reuse the cache.
    pub fn set_tools(&mut self, tools: Option<Tools>) -> Result<()> {
        if let Some(t) = &tools {
            t.validate()?;
        }
        self.tools = tools;
        Ok(())
    }

    /// The tools offered in chats.
    pub fn tools(&self) -> Option<&Tools> {
        self.tools.as_ref()
    }

    /// How this model's chat template shows tools ([`ToolFormat::detect`]).
    pub fn tool_format(&self) -> ToolFormat {
        self.engine.template().tool_format()
    }

    /// Sends tool results back as the next turn and streams the model's answer (text, or more
    /// calls). The cached conversation is reused: only the results are prefilled.
    pub fn send_tool_results(
        &mut self,
        results: &[ToolResult],
        params: &GenerationParams,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let cancel = self.fresh_session_handle();
        self.send_tool_results_with(results, params, &cancel, sink)
    }

    /// [`Session::send_tool_results`] cancelled through `cancel` (this call's own handle).
    pub fn send_tool_results_with(
        &mut self,
        results: &[ToolResult],
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if results.is_empty() {
            return Err(Error::InvalidParameter { name: "tool_results", reason: "at least one result".into() });
        }
        let messages = Tools::result_messages(self.tool_format(), results);
        self.turn_with(messages, params, cancel, sink)
    }

    /// Saves the conversation and its KV cache to `path` ([`crate::session_file`]), so that
    /// [`Engine::restore_session`] continues it without prefilling again, also after the process
    /// was killed. Crash-safe: a temporary file, synced, then renamed over `path`.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        use crate::session_file::{encode, write_atomic, Header, KvHeader};
        let t0 = Instant::now();
        let mut kv = self.cache.snapshot()?;
        // A hybrid model's recurrent state and its turn-boundary checkpoints go with the KV rows.
        let mut recurrent = self.cache.recurrent_snapshot()?;
        let mut cached = self.cached.clone();
        if kv.len != cached.len() {
            // Not expected (the cache holds exactly `cached`); save the conversation alone.
            log::warn!(
                "session save: cache holds {} tokens, ids {}; saving the conversation only",
                kv.len,
                cached.len()
            );
            kv = crate::kv_cache::KvSnapshot { len: 0, held: [0..0, 0..0], dtype: kv.dtype, data: Vec::new() };
            recurrent = None;
            cached.clear();
        }
        let layout = self.cache.layout();
        let header = Header {
            model_id: self.engine.model_id().to_string(),
            architecture: self.engine.info().architecture.clone(),
            config: self.cfg.clone(),
            history: self.history.clone(),
            cached,
            kv: KvHeader {
                dtype: kv.dtype,
                len: kv.len,
                layer_windows: layout.layer_windows.clone(),
                kv_heads: layout.kv_heads,
                head_dim: layout.head_dim,
                held: [[kv.held[0].start, kv.held[0].end], [kv.held[1].start, kv.held[1].end]],
            },
            recurrent: recurrent.as_ref().map(crate::session_file::RecurrentHeader::of),
        };
        let bytes = encode(&header, &kv, recurrent.as_ref())?;
        write_atomic(path.as_ref(), &bytes)?;
        log::debug!("session saved: {} cached tokens, {} KiB in {:.0?}", kv.len, bytes.len() >> 10, t0.elapsed());
        Ok(())
    }

    /// The session saved in `path` (see [`Engine::restore_session`]).
    pub(crate) fn restore(engine: Engine, path: &std::path::Path) -> Result<Self> {
        use crate::session_file::{decode, read_bounded, short_id};
        let t0 = Instant::now();
        let (h, kv, recurrent) = decode(read_bounded(path)?)?;
        if h.model_id != engine.model_id() {
            return Err(Error::SessionModelMismatch {
                file: short_id(&h.model_id),
                engine: short_id(engine.model_id()),
            });
        }
        let bad = |reason: String| Error::SessionFile { reason };
        let mut s = Session::new(engine, h.config).map_err(|e| match e {
            Error::InvalidParameter { .. } | Error::InputTooLarge { .. } => bad(format!("session settings: {e}")),
            other => other,
        })?;
        let layout = s.cache.layout();
        if h.kv.layer_windows != layout.layer_windows
            || h.kv.kv_heads != layout.kv_heads
            || h.kv.head_dim != layout.head_dim
        {
            return Err(bad("kv geometry differs from the model's".into()));
        }
        let vocab = s.engine.model().vocab_size();
        if h.cached.len() != kv.len || h.cached.iter().any(|&t| t as usize >= vocab) {
            return Err(bad(format!(
                "{} token ids for {} cached positions (or ids outside the vocabulary)",
                h.cached.len(),
                kv.len
            )));
        }
        if h.history.iter().any(|m| m.content.len() > crate::MAX_INPUT_BYTES) {
            return Err(bad("a history message is over the per-call input limit".into()));
        }
        s.cache.restore(&kv)?;
        s.cache.restore_recurrent(recurrent.as_ref())?;
        s.cached = h.cached;
        s.history = h.history;
        // The sampled ids of the answers are not saved: the next turn encodes them from the text.
        s.history_ids = vec![None; s.history.len()];
        log::debug!(
            "session restored: {} cached tokens, {} messages in {:.0?}",
            s.cached.len(),
            s.history.len(),
            t0.elapsed()
        );
        Ok(s)
    }

    /// Hands the KV cache's memory back (memory pressure); the conversation stays, and the next
    /// turn prefills it again. Returns the bytes released.
    pub fn release_cache(&mut self) -> usize {
        self.cached.clear();
        self.cache.release()
    }

    /// Raw completion of `prompt` (no chat template; BOS added as the model adds it). The
    /// conversation history is not used or changed; the cache is reused where it matches.
    /// Cancelled through [`Session::cancel_handle`]. A prompt over [`crate::MAX_INPUT_BYTES`] is
    /// [`Error::InputTooLarge`].
    pub fn complete(
        &mut self,
        prompt: &str,
        params: &GenerationParams,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let cancel = self.fresh_session_handle();
        self.complete_with(prompt, params, &cancel, sink)
    }

    /// [`Session::complete`] cancelled through `cancel` (this call's own handle).
    pub fn complete_with(
        &mut self,
        prompt: &str,
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        crate::check_input_len(prompt.len())?;
        params.validate()?;
        if cancel.is_cancelled() {
            return Ok(cancelled_before_start(Instant::now()));
        }
        let tok = self.engine.tokenizer();
        let ids = tok.encode(prompt, tok.add_bos_default())?;
        self.generate_from_with(ids, params, cancel, sink)
    }

    /// Sends a user message and streams the model's answer; both join the history.
    /// Cancelled through [`Session::cancel_handle`]. A message over [`crate::MAX_INPUT_BYTES`] is
    /// [`Error::InputTooLarge`].
    pub fn chat(
        &mut self,
        message: &str,
        params: &GenerationParams,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let cancel = self.fresh_session_handle();
        self.chat_with(message, params, &cancel, sink)
    }

    /// [`Session::chat`] cancelled through `cancel` (this call's own handle). A call cancelled
    /// before it generated anything leaves the history unchanged.
    pub fn chat_with(
        &mut self,
        message: &str,
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        crate::check_input_len(message.len())?;
        self.turn_with(vec![ChatMessage { role: Role::User, content: message.to_string() }], params, cancel, sink)
    }

    /// A turn: `new` messages (a user message, or tool results) join the conversation and the
    /// model answers.
    fn turn_with(
        &mut self,
        new: Vec<ChatMessage>,
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        crate::check_input_len(new.iter().map(|m| m.content.len()).fold(0usize, usize::saturating_add))?;
        params.validate()?;
        let t0 = Instant::now();
        if cancel.is_cancelled() {
            return Ok(cancelled_before_start(t0));
        }
        let format = self.tool_format();
        let mut turns = self.history.clone();
        turns.extend(new);
        let mut turn_ids = self.history_ids.clone();
        turn_ids.resize(turns.len(), None);
        let mut dropped = 0;
        let ids = loop {
            let ids = self.render(&turns, &turn_ids, params.enable_thinking)?;
            let need = ids.len() + 1;
            if need <= self.cfg.max_context {
                break ids;
            }
            // Drop the oldest user/assistant pair, if allowed and possible.
            if self.cfg.overflow == OverflowPolicy::DropOldestTurns && turns.len() > 1 {
                let n = if turns.len() >= 3 { 2 } else { 1 };
                turns.drain(..n);
                dropped += n;
                turn_ids.drain(..n);
                continue;
            }
            return Err(Error::ContextOverflow { max: self.cfg.max_context, requested: need });
        };
        // A hybrid model's recurrent state cannot be cut back to where the messages start (after
        // the system prompt), which is what a dropped turn needs: keep a checkpoint there.
        let mut anchors = Vec::new();
        let mut departure = None;
        if self.cache.is_recurrent() {
            if self.cfg.overflow == OverflowPolicy::DropOldestTurns {
                anchors.push(self.messages_start(&ids, params.enable_thinking)?);
            }
            // And where the next turn's rendering will depart from this prompt: a template that
            // renders a past answer differently from how this one is prompted (Qwen 3.5 drops the
            // thinking block of earlier answers) departs before this prompt's end.
            departure = self.next_turn_departure(&turns, &turn_ids, &ids, params.enable_thinking);
        }
        // The tool choice constrains the answer unless the caller set a constraint; a model that
        // thinks may think first, as the prompt's end says (thinking on, off, or already open).
        let thinking = thinking_after(&self.engine, &ids, params.max_tokens);
        let tool_constraint = self
            .tools
            .as_ref()
            .filter(|_| params.constraint.is_text())
            .map(|t| t.constraint_for_model(format, thinking));
        let mut g = match tool_constraint {
            Some(constraint) => self.generate(
                ids,
                &GenerationParams { constraint, ..params.clone() },
                cancel,
                sink,
                &anchors,
                departure,
            )?,
            None => self.generate(ids, params, cancel, sink, &anchors, departure)?,
        };
        g.metrics.dropped_messages = dropped;
        if g.stop_reason == StopReason::Cancelled && g.token_ids.is_empty() {
            // Nothing was answered: the turn did not happen (its prefill stays cached for reuse).
            return Ok(g);
        }
        if let Some(t) = &self.tools {
            if g.valid != Some(false) {
                g.tool_calls = t.parse_calls_thinking(format, thinking, &g.text, self.tool_turns);
            }
            self.tool_turns += 1;
        }
        turns.push(ChatMessage { role: Role::Assistant, content: g.text.clone() });
        // The sampled tokens stand for the answer in the next prompt when they are exactly its
        // text (not after a stop sequence, which the text drops, or a cancel).
        let exact = matches!(g.stop_reason, StopReason::Eos | StopReason::MaxTokens | StopReason::ContextFull)
            && self.engine.tokenizer().decode(&g.token_ids, false).is_ok_and(|t| t == g.text);
        turn_ids.push(exact.then(|| g.token_ids.clone()));
        self.history = turns;
        self.history_ids = turn_ids;
        Ok(g)
    }

    /// Clears and returns the session-wide handle (for the calls without one of their own).
    fn fresh_session_handle(&self) -> CancelHandle {
        self.cancel.clear();
        self.cancel.clone()
    }

    /// Where the messages start in `ids` (a rendering of this session's conversation): the
    /// tokens it shares with the rendering of a single empty user message — the system prompt
    /// (and tool block) and what the template puts before the first message. A conversation
    /// whose oldest turns were dropped shares them too.
    fn messages_start(&self, ids: &[u32], thinking: Option<bool>) -> Result<usize> {
        let probe = self.render(&[ChatMessage { role: Role::User, content: String::new() }], &[None], thinking)?;
        Ok(shared_prefix(ids, &probe))
    }

    /// Where a rendering of `turns` followed by an answer and another user message departs from
    /// `ids` (the rendering of `turns` with the generation prompt): the prompt's length for
    /// templates that render a past answer as it was prompted, less for those that do not.
    /// `None` where that rendering fails (the turn goes on without this checkpoint).
    fn next_turn_departure(
        &self,
        turns: &[ChatMessage],
        turn_ids: &[Option<Vec<u32>>],
        ids: &[u32],
        thinking: Option<bool>,
    ) -> Option<usize> {
        let mut next = turns.to_vec();
        let [answer, user] = NEXT_TURN_PROBE;
        next.push(ChatMessage { role: Role::Assistant, content: answer.into() });
        next.push(ChatMessage { role: Role::User, content: user.into() });
        let mut next_ids = turn_ids.to_vec();
        next_ids.resize(next.len(), None);
        let probe = self.render(&next, &next_ids, thinking).ok()?;
        Some(shared_prefix(ids, &probe))
    }

    /// The conversation `turns` as the prompt's token ids, the template rendered with
    /// `enable_thinking` = `thinking` where set ([`GenerationParams::enable_thinking`]).
    fn render(&self, turns: &[ChatMessage], turn_ids: &[Option<Vec<u32>>], thinking: Option<bool>) -> Result<Vec<u32>> {
        let mut msgs = Vec::with_capacity(turns.len() + 1);
        let mut known: Vec<Option<&[u32]>> = Vec::with_capacity(turns.len() + 1);
        // The built-in format describes the tools in the system prompt; a template that takes
        // tools gets them as `tools`.
        let format = self.tool_format();
        let (tool_block, template_tools) = match &self.tools {
            Some(t) if format == ToolFormat::Builtin => (t.system_block(), None),
            Some(t) => (String::new(), t.template_tools()),
            None => (String::new(), None),
        };
        let system = match (&self.cfg.system_prompt, tool_block.is_empty()) {
            (Some(sys), true) => Some(sys.clone()),
            (Some(sys), false) => Some(format!("{sys}\n\n{tool_block}")),
            (None, false) => Some(tool_block),
            (None, true) => None,
        };
        if let Some(sys) = system {
            msgs.push(ChatMessage { role: Role::System, content: sys });
            known.push(None);
        }
        msgs.extend_from_slice(turns);
        known.extend(turn_ids.iter().map(Option::as_deref));
        // One BOS, template text parsed for control tokens, message text encoded as typed (a user
        // who types `<end_of_turn>` cannot forge a turn boundary).
        self.engine.template().with_thinking(thinking).encode_known(
            self.engine.tokenizer(),
            &msgs,
            template_tools.as_ref(),
            true,
            &known,
        )
    }

    /// Feeds `ids` after what is cached and returns the logits of positions `first..` of them
    /// (tools: perplexity, logit inspection). The conversation history is not changed.
    pub fn prefill_logits(&mut self, ids: &[u32], first: usize) -> Result<Vec<Vec<f32>>> {
        if self.cache.len() + ids.len() > self.cfg.max_context {
            return Err(Error::ContextOverflow { max: self.cfg.max_context, requested: self.cache.len() + ids.len() });
        }
        let mut out = Vec::new();
        let mut offset = 0;
        for chunk in ids.chunks(self.cfg.prefill_chunk) {
            let end = offset + chunk.len();
            if end > first {
                let from = first.saturating_sub(offset);
                out.extend(self.engine.model().forward_from(chunk, &mut self.cache, from)?);
            } else {
                self.engine.model().forward(chunk, &mut self.cache)?;
            }
            self.cached.extend_from_slice(chunk);
            offset = end;
        }
        Ok(out)
    }

    /// Generates a continuation of `prompt` token ids (the core loop). Cancelled through
    /// [`Session::cancel_handle`].
    pub fn generate_from(
        &mut self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let cancel = self.fresh_session_handle();
        self.generate_from_with(prompt, params, &cancel, sink)
    }

    /// [`Session::generate_from`] cancelled through `cancel` (this call's own handle): checked
    /// before anything runs, before each prefill chunk and before each token.
    pub fn generate_from_with(
        &mut self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate(prompt, params, cancel, sink, &[], None)
    }

    /// [`Session::generate_from_with`], with a hybrid model's recurrent state also checkpointed
    /// at `anchors` tokens of the prompt (where the messages start) and at `departure` (where
    /// the next turn's rendering departs from this prompt; see [`Session::chat_with`]). The end
    /// of the prompt is checkpointed unless `departure` lies before it (the next turn would not
    /// use it). A prefill pass ends at each of these points, so they change how the prompt is
    /// split into passes: the router's `LocalEngine` passes the same points as a chat turn for
    /// the same conversation, so that both compute the same passes (a recurrent model's
    /// rounding depends on the split, and a random model's greedy near-ties follow it).
    pub(crate) fn generate(
        &mut self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
        anchors: &[usize],
        departure: Option<usize>,
    ) -> Result<Generation> {
        params.validate()?;
        let t0 = Instant::now();
        if cancel.is_cancelled() {
            return Ok(cancelled_before_start(t0));
        }
        if prompt.is_empty() {
            return Err(Error::InvalidParameter { name: "prompt", reason: "no tokens".into() });
        }
        if prompt.len() + 1 > self.cfg.max_context {
            return Err(Error::ContextOverflow { max: self.cfg.max_context, requested: prompt.len() + 1 });
        }
        let model = self.engine.model();
        // Reuse the cached prefix; at least one token must be fed to get logits.
        let mut common = shared_prefix(&self.cached, &prompt);
        common = common.min(prompt.len() - 1);
        // A cache that cannot cut there (a sliding window already overwritten, or a hybrid
        // model's recurrent state without a checkpoint there) keeps less, or nothing.
        common = self.cache.rewind(common);
        self.cached.truncate(common);
        let mut sampler = Sampler::new(params.sampling.clone())?;
        // Compiled (and its first mask computed) before any work: a bad constraint costs nothing.
        let mut constraint = match &params.constraint {
            OutputConstraint::Text => None,
            c => self.engine.constraint_compiler()?.compile(c)?,
        };
        // A constraint's sampled steps mask the logits on the host: they read them all back.
        let host_logits = constraint.is_some();
        let top_needed = |sampler: &Sampler, history: &[u32]| {
            if host_logits {
                None
            } else {
                sampler.candidates_needed(history, model.vocab_size())
            }
        };
        // Greedy without a penalty needs only the maximum: the model may pick on its device,
        // under a constraint's mask too (the mask goes to the device; `EDGEWISE_HOST_SAMPLING`
        // keeps constrained steps on the host).
        let device_pick = sampler.is_plain_greedy() && !host_logits;
        let masked_pick = sampler.is_plain_greedy() && host_logits && !sampler.host_only();
        // Otherwise, where the sampler's settings allow it, only the `top` largest logits.
        // `c` is the constraint whose mask a masked device pick uses.
        let step = |tokens: &[u32],
                    cache: &mut KvCache,
                    top: Option<usize>,
                    c: Option<&mut crate::structured::Constrained>|
         -> Result<Next> {
            Ok(match (top, c) {
                _ if device_pick => Next::Picked(model.forward_greedy(tokens, cache)?),
                (_, Some(c)) if masked_pick => {
                    match model.forward_greedy_masked(tokens, cache, &mut || c.greedy_words())? {
                        MaskedPick::Picked(t, lp) => Next::Picked((t, lp)),
                        MaskedPick::All(l) => Next::Logits(l),
                    }
                }
                (Some(k), _) => match model.forward_top_k(tokens, cache, k)? {
                    StepLogits::Top(t) => Next::Top(t),
                    StepLogits::All(l) => Next::Logits(l),
                },
                (None, _) => Next::Logits(model.forward(tokens, cache)?),
            })
        };
        let mut next_out = Next::Logits(Vec::new());
        let mut at = common;
        while at < prompt.len() {
            if cancel.is_cancelled() {
                return Ok(self.finish_cancelled(&prompt, common, t0, constraint.is_some()));
            }
            // A chunk ends at each anchor, so the state there can be kept.
            let mut end = (at + self.cfg.prefill_chunk).min(prompt.len());
            if let Some(a) = anchors.iter().copied().chain(departure).filter(|&a| at < a && a < end).min() {
                end = a;
            }
            let chunk = &prompt[at..end];
            // Only the last chunk's logits are sampled (and only it may use the mask).
            let c = if end == prompt.len() { constraint.as_mut() } else { None };
            next_out = step(chunk, &mut self.cache, top_needed(&sampler, &prompt), c)?;
            self.cached.extend_from_slice(chunk);
            if end < prompt.len() && (anchors.contains(&end) || departure == Some(end)) {
                self.cache.checkpoint();
            }
            at = end;
        }
        // A turn boundary: a hybrid model keeps its recurrent state here, so the next turn (whose
        // prompt starts with this one) need not prefill it again even where its rendering of
        // this answer differs from the tokens generated. A no-op for a plain transformer.
        // Not where the next turn departs before it (that point was just checkpointed instead).
        if !departure.is_some_and(|d| common < d && d < prompt.len()) {
            self.cache.checkpoint();
        }
        let prefill_s = t0.elapsed().as_secs_f64();
        let tok = self.engine.tokenizer();
        let eos = tok.eos_ids();
        let mut stream = tok.stream_decoder();
        let mut stops = StopMatcher::new(&params.stop);
        let mut generated: Vec<u32> = Vec::new();
        let mut history: Vec<u32> = prompt.clone();
        let mut text = String::new();
        let mut logprob_sum = 0f64;
        let mut ttft = None;
        let mut t_first = t0;
        let reason = loop {
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            let (next, lp) = match &mut next_out {
                Next::Picked(p) => *p,
                Next::Logits(logits) => match constraint.as_mut() {
                    None => sampler.sample(logits, &history)?,
                    Some(c) => match c.sample(&mut sampler, logits, &history)? {
                        Some(pick) => pick,
                        // Nothing may follow: the output is complete.
                        None => break StopReason::Eos,
                    },
                },
                Next::Top(top) => sampler.sample_top(top, &history)?,
            };
            if ttft.is_none() {
                ttft = Some(t0.elapsed().as_secs_f64());
                t_first = Instant::now();
            }
            if (!params.ignore_eos || constraint.is_some()) && eos.contains(&next) {
                break StopReason::Eos;
            }
            if let Some(c) = constraint.as_mut() {
                c.commit(next)?;
            }
            generated.push(next);
            history.push(next);
            logprob_sum += lp as f64;
            if let Some(piece) = stream.push(next)? {
                let (emit, hit) = stops.feed(&piece);
                if !emit.is_empty() {
                    text.push_str(&emit);
                    if !sink(&emit) {
                        break StopReason::Cancelled;
                    }
                }
                if hit {
                    break StopReason::StopSequence;
                }
            }
            if constraint.as_ref().is_some_and(|c| c.is_stopped()) {
                break StopReason::Eos;
            }
            if generated.len() >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            if self.cache.len() >= self.cfg.max_context {
                break StopReason::ContextFull;
            }
            let top = top_needed(&sampler, &history);
            if let Some(c) = constraint.as_mut() {
                // The next mask is computed on the constraint's worker thread while the model
                // runs the forward pass (it depends only on the tokens so far, not on the logits).
                c.start_mask();
            }
            next_out = step(&[next], &mut self.cache, top, constraint.as_mut())?;
            self.cached.push(next);
        };
        // The end of the answer (or of its part before a cancel): the last state the cache and
        // the cached tokens agree on. A hybrid model keeps it, so a next prompt that departs
        // after it (a new turn; a cancelled turn edited and sent again) goes back here and not
        // to the end of this prompt, which would prefill this answer again.
        self.cache.checkpoint();
        if matches!(reason, StopReason::MaxTokens | StopReason::ContextFull | StopReason::Eos) {
            // Flush text held back by the decoder or the stop matcher.
            let mut tail = stream.finish()?.unwrap_or_default();
            tail = stops.feed(&tail).0 + &stops.flush();
            if !tail.is_empty() {
                text.push_str(&tail);
                sink(&tail);
            }
        }
        let total = t0.elapsed().as_secs_f64();
        let decode_n = generated.len().saturating_sub(1);
        let decode_s = t_first.elapsed().as_secs_f64();
        let prefilled = prompt.len() - common;
        let metrics = Metrics {
            prompt_tokens: prompt.len(),
            prefilled_tokens: prefilled,
            generated_tokens: generated.len(),
            ttft_ms: ttft.unwrap_or(total) * 1e3,
            prefill_tokens_per_s: if prefill_s > 0.0 { prefilled as f64 / prefill_s } else { 0.0 },
            decode_tokens_per_s: if decode_s > 0.0 && decode_n > 0 { decode_n as f64 / decode_s } else { 0.0 },
            total_ms: total * 1e3,
            dropped_messages: 0,
        };
        log::debug!(
            "generation: {} prompt ({} prefilled) + {} tokens, {:?}, prefill {:.1} tok/s, decode {:.1} tok/s",
            metrics.prompt_tokens,
            prefilled,
            generated.len(),
            reason,
            metrics.prefill_tokens_per_s,
            metrics.decode_tokens_per_s
        );
        let mean_logprob = if generated.is_empty() { 0.0 } else { (logprob_sum / generated.len() as f64) as f32 };
        let (valid, json) = match constraint.as_mut() {
            None => (None, None),
            Some(c) => {
                let complete = reason == StopReason::Eos && c.is_accepting();
                let json =
                    if complete && c.is_json() { serde_json::from_str::<serde_json::Value>(&text).ok() } else { None };
                (Some(complete && (json.is_some() || !c.is_json())), json)
            }
        };
        Ok(Generation {
            text,
            token_ids: generated,
            stop_reason: reason,
            mean_logprob,
            metrics,
            valid,
            json,
            tool_calls: Vec::new(),
        })
    }

    fn finish_cancelled(&self, prompt: &[u32], common: usize, t0: Instant, constrained: bool) -> Generation {
        let total = t0.elapsed().as_secs_f64() * 1e3;
        Generation {
            text: String::new(),
            token_ids: Vec::new(),
            stop_reason: StopReason::Cancelled,
            mean_logprob: 0.0,
            metrics: Metrics {
                prompt_tokens: prompt.len(),
                prefilled_tokens: self.cached.len().saturating_sub(common),
                total_ms: total,
                ..Default::default()
            },
            valid: constrained.then_some(false),
            json: None,
            tool_calls: Vec::new(),
        }
    }
}

/// The result of a call cancelled before it did anything.
fn cancelled_before_start(t0: Instant) -> Generation {
    Generation {
        text: String::new(),
        token_ids: Vec::new(),
        stop_reason: StopReason::Cancelled,
        mean_logprob: 0.0,
        metrics: Metrics { total_ms: t0.elapsed().as_secs_f64() * 1e3, ..Default::default() },
        valid: None,
        json: None,
        tool_calls: Vec::new(),
    }
}

/// How long a call on a [`SharedSession`] waits for a *cancelled* generation that still holds
/// the session (it stops before its next prefill chunk or token: milliseconds on a CPU, about a
/// second for one token on a slow GPU) before failing with [`Error::Busy`].
pub const UNWIND_WAIT: Duration = Duration::from_secs(10);

/// A [`Session`] shared between threads, one call at a time (what the Kotlin/Swift
/// `ChatSession` wraps). A call that finds a live generation fails with [`Error::Busy`] at once;
/// one that finds a cancelled generation still unwinding waits for it, at most [`UNWIND_WAIT`].
/// [`SharedSession::cancel_running`] cancels whatever call holds the session now.
pub struct SharedSession {
    session: Mutex<Session>,
    /// The handle of the call holding the session (`Some` while one does).
    holder: Mutex<Option<CancelHandle>>,
    freed: Condvar,
    unwind_wait: Duration,
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSession")
            .field("busy", &lock_ignoring_poison(&self.holder).is_some())
            .finish_non_exhaustive()
    }
}

/// Frees the [`SharedSession`]'s slot when the call ends (also on a panic).
struct Slot<'a>(&'a SharedSession);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock_ignoring_poison(&self.0.holder) = None;
        self.0.freed.notify_all();
    }
}

impl SharedSession {
    /// Wraps `session`. Its engine's [`Engine::trim`] releases its KV cache while it is idle.
    pub fn new(session: Session) -> Arc<Self> {
        Self::with_unwind_wait(session, UNWIND_WAIT)
    }

    /// Wraps `session`, waiting at most `wait` for a cancelled generation to unwind.
    pub fn with_unwind_wait(session: Session, wait: Duration) -> Arc<Self> {
        let engine = session.engine.clone();
        let shared = Arc::new(Self {
            session: Mutex::new(session),
            holder: Mutex::new(None),
            freed: Condvar::new(),
            unwind_wait: wait,
        });
        let weak: std::sync::Weak<dyn Trimmable> = Arc::downgrade(&(shared.clone() as Arc<dyn Trimmable>));
        engine.register_trimmable(weak);
        shared
    }

    /// Runs `f` on the session as the call whose handle is `cancel` (which `f` passes to the
    /// `_with` generation methods). [`Error::Busy`] while another, live call holds the session;
    /// a cancelled one is waited for (bounded). [`Error::Cancelled`] when `cancel` fires while
    /// waiting.
    pub fn run<T>(&self, cancel: &CancelHandle, f: impl FnOnce(&mut Session) -> T) -> Result<T> {
        let _slot = self.acquire(cancel)?;
        // The slot is ours, so nobody else holds the mutex; it is poisoned only if an earlier
        // call panicked inside it: start that conversation over rather than trust its cache.
        let mut session = self.session.lock().unwrap_or_else(|p| {
            let mut s = p.into_inner();
            s.reset();
            log::warn!("session recovered from a panicked call; its history was reset");
            s
        });
        self.session.clear_poison();
        Ok(f(&mut session))
    }

    /// Cancels the call holding the session now, if any (a later call is not affected).
    pub fn cancel_running(&self) {
        if let Some(h) = lock_ignoring_poison(&self.holder).as_ref() {
            h.cancel();
        }
    }

    fn acquire(&self, cancel: &CancelHandle) -> Result<Slot<'_>> {
        let deadline = Instant::now() + self.unwind_wait;
        let mut holder = lock_ignoring_poison(&self.holder);
        loop {
            match holder.as_ref() {
                None => {
                    *holder = Some(cancel.clone());
                    return Ok(Slot(self));
                }
                Some(running) if running.is_cancelled() => {
                    if cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        log::warn!("a cancelled generation did not unwind within {:?}", self.unwind_wait);
                        return Err(Error::Busy);
                    }
                    // Woken when the slot frees; re-checked every 50 ms for our own cancel.
                    let step = (deadline - now).min(Duration::from_millis(50));
                    holder = self.freed.wait_timeout(holder, step).unwrap_or_else(PoisonError::into_inner).0;
                }
                Some(_) => return Err(Error::Busy),
            }
        }
    }
}

impl Trimmable for SharedSession {
    /// Releases the cache of an idle session (a session in a call is skipped).
    fn trim(&self, _level: TrimLevel) -> TrimReport {
        let holder = lock_ignoring_poison(&self.holder);
        if holder.is_some() {
            return TrimReport::default();
        }
        // The slot is free and we hold its lock, so no call can start meanwhile.
        let Ok(mut session) = self.session.try_lock() else { return TrimReport::default() };
        let bytes = session.release_cache();
        drop(session);
        drop(holder);
        TrimReport { kv_cache_bytes: bytes, sessions: usize::from(bytes > 0), weights_released: false }
    }
}

/// Finds stop sequences in streamed text, holding back any tail that could still become one.
struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    fn new(stops: &[String]) -> Self {
        Self { stops: stops.to_vec(), pending: String::new() }
    }

    /// Adds a piece; returns the text safe to emit and whether a stop sequence was hit.
    fn feed(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        if self.stops.is_empty() {
            return (std::mem::take(&mut self.pending), false);
        }
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop sequence.
        let keep_from = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.pending[i..])))
            .unwrap_or(self.pending.len());
        let out = self.pending[..keep_from].to_string();
        self.pending.drain(..keep_from);
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// How many leading tokens `a` and `b` share.
pub(crate) fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The answer and the user message appended to a conversation to find where its next request
/// departs from this prompt ([`Session::chat_with`]'s checkpoint); the router's `LocalEngine`
/// probes with the same two, so both cut a hybrid model's prefill at the same token.
pub(crate) const NEXT_TURN_PROBE: [&str; 2] = ["x", "y"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matcher_holds_back_partial_matches() {
        let mut m = StopMatcher::new(&["\nUser:".to_string()]);
        assert_eq!(m.feed("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.feed(" world\nUs"), (" world".to_string(), false));
        assert_eq!(m.feed("e"), (String::new(), false));
        assert_eq!(m.feed("r: hi"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.feed("aEN"), ("a".to_string(), false));
        assert_eq!(m.feed("x"), ("ENx".to_string(), false));
        assert_eq!(m.flush(), "");
    }

    /// The default model on the wgpu backend for the device-vs-host tests below, or `None`
    /// (skipped) without the model or a wgpu device.
    fn gpu_test_engine() -> Option<Engine> {
        use crate::backend::BackendPreference;
        use crate::engine::EngineConfig;
        let path = crate::catalog::test_model_path()?;
        if let Err(e) = crate::backend::gpu() {
            eprintln!("SKIPPED: no wgpu device ({e})");
            return None;
        }
        let cfg = EngineConfig { backend: BackendPreference::Gpu, threads: Some(2), gpu_self_test: false };
        Some(Engine::load(path, cfg).unwrap())
    }

    /// One generation on a fresh session with the device picking (`host` false) or with every
    /// step's logits read back and sampled on the host (`host` true).
    fn generate_on(engine: &Engine, prompt: &str, params: &GenerationParams, host: bool) -> Generation {
        use crate::sampling::FORCE_HOST_SAMPLING;
        FORCE_HOST_SAMPLING.with(|f| f.set(host));
        let mut s = engine.new_session(SessionConfig { max_context: 128, ..Default::default() }).unwrap();
        let g = s.complete(prompt, params, &mut |_| true);
        FORCE_HOST_SAMPLING.with(|f| f.set(false));
        g.unwrap()
    }

    /// The device-picked and host-sampled generations of `prompt`: same tokens, log-probabilities
    /// within 1e-3. Returns the device's.
    fn assert_device_equals_host(engine: &Engine, prompt: &str, params: &GenerationParams) -> Generation {
        let (device, host) = (generate_on(engine, prompt, params, false), generate_on(engine, prompt, params, true));
        assert_eq!(device.token_ids, host.token_ids, "{:?}", params.sampling);
        assert!(
            (device.mean_logprob - host.mean_logprob).abs() < 1e-3,
            "{} vs {}",
            device.mean_logprob,
            host.mean_logprob
        );
        device
    }

    /// On wgpu (lavapipe here), seeded sampled generations with top-k give the same tokens when
    /// the device selects the candidates as when every step reads all the logits back.
    #[test]
    fn device_top_k_sampling_matches_the_full_read_back() {
        use crate::model::StepLogits;
        let Some(engine) = gpu_test_engine() else { return };
        // The device path is really taken (or the comparison below would prove nothing).
        let ids = engine.tokenizer().encode("Once upon a time", true).unwrap();
        let mut cache = engine.model().new_cache(64, 16).unwrap();
        assert!(matches!(engine.model().forward_top_k(&ids, &mut cache, 40).unwrap(), StepLogits::Top(_)));
        for (sampling, n) in [
            (SamplingParams { temperature: 0.9, top_k: 40, seed: 7, ..Default::default() }, 10),
            (
                SamplingParams {
                    temperature: 1.5,
                    top_k: 64,
                    top_p: 1.0,
                    min_p: 0.0,
                    repetition_penalty: 1.3,
                    seed: 11,
                    ..Default::default()
                },
                10,
            ),
            (SamplingParams { repetition_penalty: 1.5, ..SamplingParams::greedy() }, 6),
        ] {
            let params = GenerationParams { sampling, max_tokens: n, ignore_eos: true, ..Default::default() };
            assert_device_equals_host(&engine, "Once upon a time", &params);
        }
    }

    /// On wgpu (lavapipe here), constrained greedy generations give the same tokens and
    /// log-probabilities when the device picks under the uploaded mask as when every step reads
    /// all the logits back and the host masks them (the path before the device pick).
    #[test]
    fn device_masked_greedy_matches_the_host_mask() {
        let Some(engine) = gpu_test_engine() else { return };
        // The device path is really taken (or the comparison below would prove nothing).
        let ids = engine.tokenizer().encode("Once upon a time", true).unwrap();
        let mut cache = engine.model().new_cache(64, 16).unwrap();
        let mut only_7 = || Ok(Some(vec![1u32 << 7]));
        assert!(matches!(
            engine.model().forward_greedy_masked(&ids, &mut cache, &mut only_7).unwrap(),
            MaskedPick::Picked(7, _)
        ));
        let schema = r#"{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":2}},"required":["name","age","tags"],"additionalProperties":false}"#;
        let params = GenerationParams {
            constraint: OutputConstraint::JsonSchema(schema.into()),
            ..GenerationParams::greedy(40)
        };
        let device = assert_device_equals_host(&engine, "A person record in JSON:", &params);
        assert_eq!(device.valid, Some(true), "{:?}", device.text);
    }

    /// With the real model (skipped without it): an oversized prompt, chat message, system
    /// prompt or router request is refused with sizes only, before any tokenizing, and the session
    /// still works afterwards.
    #[test]
    fn oversized_inputs_are_refused_by_every_entry_point() {
        use crate::backend::BackendPreference;
        use crate::engine::EngineConfig;
        use crate::router::{ChatRequest, LocalEngine};
        let Some(path) = crate::catalog::test_model_path() else { return };
        let engine = Engine::load(
            path,
            EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false },
        )
        .unwrap();
        let big = "CANARY words ".repeat(crate::MAX_INPUT_BYTES / 13 + 1);
        let check = |r: Result<Generation>, what: &str| match r {
            Err(e @ Error::InputTooLarge { .. }) => assert!(!e.to_string().contains("CANARY"), "{what}: {e}"),
            other => panic!("{what}: expected InputTooLarge, got {:?}", other.map(|g| g.token_ids.len())),
        };
        let mut s = engine.new_session(SessionConfig { max_context: 64, ..Default::default() }).unwrap();
        let params = GenerationParams::greedy(2);
        let t0 = std::time::Instant::now();
        check(s.complete(&big, &params, &mut |_| true), "complete");
        check(s.chat(&big, &params, &mut |_| true), "chat");
        assert!(t0.elapsed().as_millis() < 1000, "refused before any work: {:?}", t0.elapsed());
        assert!(s.history().is_empty());
        assert_eq!(s.complete("Hello", &params, &mut |_| true).unwrap().token_ids.len(), 2);
        let cfg = SessionConfig { system_prompt: Some(big.clone()), ..Default::default() };
        assert!(matches!(engine.new_session(cfg.clone()), Err(Error::InputTooLarge { .. })));
        assert!(matches!(LocalEngine::new(engine.clone(), cfg, params.clone()), Err(Error::InputTooLarge { .. })));
        let local =
            LocalEngine::new(engine, SessionConfig { max_context: 64, ..Default::default() }, params.clone()).unwrap();
        check(local.generate_with(&ChatRequest::user(big), &params, &mut |_| true), "LocalEngine::generate_with");
    }

    #[test]
    fn params_validation() {
        assert!(GenerationParams { max_tokens: 0, ..Default::default() }.validate().is_err());
        assert!(GenerationParams { stop: vec![String::new()], ..Default::default() }.validate().is_err());
        assert!(SessionConfig { max_context: 1, ..Default::default() }.validate(32768).is_err());
        assert!(SessionConfig { max_context: 1 << 20, ..Default::default() }.validate(32768).is_err());
    }
}
