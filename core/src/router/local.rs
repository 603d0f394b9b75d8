//! The inference engine as the router's [`LocalModel`]: [`LocalEngine`].
//!
//! This file is the one bridge between the router and the engine; the rest of `router/` still
//! sees only the [`LocalModel`] trait.
//!
//! ```no_run
//! # use edgewise_core::engine::{Engine, EngineConfig};
//! # use edgewise_core::router::{local::LocalEngine, ChatRequest, RequestMeta, Router, RouterConfig};
//! # use edgewise_core::session::{GenerationParams, SessionConfig};
//! # fn main() -> edgewise_core::Result<()> {
//! let engine = Engine::load("gemma-3-270m-q4_k_m.gguf", EngineConfig::default())?;
//! let local = LocalEngine::new(engine, SessionConfig::default(), GenerationParams::default())?;
//! let router = Router::new(RouterConfig::local_only("/data/app/router"))?;
//! let request = ChatRequest::user("Name three rivers.").with_system("Answer briefly.");
//! let mut sink = |t: &str| { print!("{t}"); true };
//! let answer = router.answer(&local, &request, &RequestMeta::default(), &mut sink)?;
//! # let _ = answer; Ok(()) }
//! ```
//!
//! Each request is rendered whole (system prompt, history, new message, attachments folded in as
//! [`ChatRequest::wire_messages`] does for the cloud) through the model's chat template, with
//! message contents encoded as user text so that typed control tokens cannot forge a turn.
//! Sessions are pooled: a request whose rendered prompt starts like an earlier one (the next turn
//! of the same chat) reuses that part of the KV cache instead of prefilling it again
//! ([`LocalEngine::with_session_reuse`] turns that off).
//!
//! Chat templates are strict about roles (Gemma's demands user/assistant alternation), so the
//! messages are normalised first: every system message is joined into one leading system
//! message, and consecutive messages of the same role are joined with a blank line.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::{
    AnswerSink, ChatMessage, ChatRequest, FinishReason, LocalAnswer, LocalModel, RequestMeta, Role, RoutedAnswer,
    Router, StructuredAnswer, StructuredRequest,
};
use crate::engine::Engine;
use crate::memory::{TrimLevel, TrimReport, Trimmable};
use crate::session::{
    shared_prefix, CancelGroup, CancelHandle, Generation, GenerationParams, Metrics, OverflowPolicy, Session,
    SessionConfig, StopReason, NEXT_TURN_PROBE,
};
use crate::structured::tools::{Thinking, ToolChoice, ToolFormat, ToolResult, Tools};
use crate::tokenizer::{ChatMessage as TurnMessage, Role as TurnRole};
use crate::{Error, Result};

/// Idle sessions kept for KV-cache reuse (each holds a cache of `max_context` tokens).
const MAX_IDLE_SESSIONS: usize = 2;

/// A loaded [`Engine`] serving [`LocalModel`] requests. `Send + Sync`: share it behind an `Arc`
/// between the router, the server and a cancel button. Generations may run concurrently (each
/// on its own session).
pub struct LocalEngine {
    engine: Engine,
    session_config: SessionConfig,
    params: GenerationParams,
    model_id: String,
    reuse_sessions: bool,
    idle: Arc<IdlePool>,
    running: CancelGroup,
    /// Answers with tools so far (the `n` of tool-call ids).
    tool_turns: std::sync::atomic::AtomicU64,
}

/// Finished sessions kept for KV-cache reuse; [`Engine::trim`] empties it.
#[derive(Default)]
struct IdlePool(Mutex<Vec<Session>>);

impl Trimmable for IdlePool {
    fn trim(&self, _level: TrimLevel) -> TrimReport {
        let dropped: Vec<Session> = std::mem::take(&mut *lock(&self.0));
        let bytes = dropped.iter().map(Session::cache_bytes).sum();
        TrimReport { kv_cache_bytes: bytes, sessions: dropped.len(), weights_released: false }
    }
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("model_id", &self.model_id)
            .field("session_config", &self.session_config)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A routed answer from [`LocalEngine::answer`], with the local generation's details when the
/// device answered.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineAnswer {
    /// The router's answer: text, decision, who served it, fallback.
    pub answer: RoutedAnswer,
    /// Timing and counts of the local generation; `None` when the cloud answered.
    pub local_metrics: Option<Metrics>,
    /// Why the local generation stopped; `None` when the cloud answered.
    pub local_stop_reason: Option<StopReason>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing held in these mutexes can be left half-updated by a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Maps the session's stop reason onto the OpenAI-style finish reason.
pub fn finish_reason(stop: StopReason) -> FinishReason {
    match stop {
        StopReason::Eos | StopReason::StopSequence => FinishReason::Stop,
        StopReason::MaxTokens | StopReason::ContextFull => FinishReason::Length,
        StopReason::Cancelled => FinishReason::Cancelled,
    }
}

impl LocalEngine {
    /// Wraps `engine`. `session_config` sizes each request's context (and gives the system
    /// prompt used when a request has none); `params` are the generation defaults, which a
    /// request's `max_tokens` and `temperature` override.
    pub fn new(engine: Engine, session_config: SessionConfig, params: GenerationParams) -> Result<Self> {
        session_config.validate(engine.info().context_length)?;
        params.validate()?;
        let info = engine.info();
        let model_id = info
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| info.architecture.clone());
        let idle = Arc::new(IdlePool::default());
        let weak: Weak<dyn Trimmable> = Arc::downgrade(&(idle.clone() as Arc<dyn Trimmable>));
        engine.register_trimmable(weak);
        Ok(Self {
            engine,
            session_config,
            params,
            model_id,
            reuse_sessions: true,
            idle,
            running: CancelGroup::new(),
            tool_turns: Default::default(),
        })
    }

    /// Sets the id reported by [`LocalModel::model_id`] (builder style).
    pub fn with_model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = id.into();
        self
    }

    /// Keep finished sessions for KV-cache reuse (on by default; builder style). Off, every
    /// request is prefilled from scratch: slower for multi-turn chats, but a repeated greedy
    /// request then always gets the same answer. (With reuse, the last prompt token of a cached
    /// prefix is computed by a single-token pass instead of inside the prefill batch; the logits
    /// agree only to rounding, which can flip a near-tie, as llama.cpp's prompt cache can.)
    pub fn with_session_reuse(mut self, reuse: bool) -> Self {
        self.reuse_sessions = reuse;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The per-request session settings.
    pub fn session_config(&self) -> &SessionConfig {
        &self.session_config
    }

    /// The default generation settings.
    pub fn params(&self) -> &GenerationParams {
        &self.params
    }

    /// Cancels every generation running now (they end with [`StopReason::Cancelled`] before
    /// their next token). Generations started later are not affected.
    pub fn cancel_running(&self) {
        self.running.cancel_all();
    }

    /// Renders and encodes `request`; drops the oldest turns when it does not fit and the session
    /// config allows that.
    fn encode(
        &self,
        request: &ChatRequest,
        tools: Option<&serde_json::Value>,
        thinking: Option<bool>,
    ) -> Result<Vec<u32>> {
        let format = self.engine.template().tool_format();
        let template = self.engine.template().with_thinking(thinking);
        let mut turns = turns(request, self.session_config.system_prompt.as_deref(), format);
        let max = self.session_config.max_context;
        loop {
            let ids = template.encode_known(self.engine.tokenizer(), &turns, tools, true, &[])?;
            let need = ids.len() + 1;
            if need <= max {
                return Ok(ids);
            }
            let first_turn = usize::from(turns.first().is_some_and(|t| t.role == TurnRole::System));
            // Keep at least the last message; drop a user/assistant pair so roles still alternate.
            let droppable = turns.len().saturating_sub(first_turn + 1);
            if self.session_config.overflow != OverflowPolicy::DropOldestTurns || droppable == 0 {
                return Err(Error::ContextOverflow { max, requested: need });
            }
            let n = droppable.min(2);
            turns.drain(first_turn..first_turn + n);
        }
    }

    /// Where a session's chat turn over the same conversation checkpoints a hybrid model's
    /// state in `ids` (`request` encoded; [`Session::chat_with`]): where the messages start
    /// (under [`OverflowPolicy::DropOldestTurns`], where a request whose oldest turns were
    /// dropped departs), and where the conversation's next request departs from this prompt
    /// (Qwen 3.5's template renders a past answer without the thinking block its prompt
    /// opened, so the next request departs before the end of this one). A probe that fails
    /// to render gives no point there (the request goes on without that checkpoint).
    fn turn_marks(
        &self,
        request: &ChatRequest,
        tools: Option<&serde_json::Value>,
        thinking: Option<bool>,
        ids: &[u32],
    ) -> (Vec<usize>, Option<usize>) {
        let shared = |probe: &ChatRequest| self.encode(probe, tools, thinking).ok().map(|p| shared_prefix(ids, &p));
        let mut anchors = Vec::new();
        if self.session_config.overflow == OverflowPolicy::DropOldestTurns {
            let mut first = ChatRequest {
                messages: request.messages.iter().filter(|m| m.role == Role::System).cloned().collect(),
                ..ChatRequest::default()
            };
            first.messages.push(ChatMessage::new(Role::User, ""));
            anchors.extend(shared(&first));
        }
        // The attachments folded into this request's last user message, as it was rendered.
        let mut next = ChatRequest { messages: request.wire_messages(), ..ChatRequest::default() };
        let [answer, user] = NEXT_TURN_PROBE;
        next.messages.push(ChatMessage::new(Role::Assistant, answer));
        next.messages.push(ChatMessage::new(Role::User, user));
        (anchors, shared(&next))
    }

    /// The generation settings for `request`: `base`, with the request's `max_tokens`,
    /// `temperature` and `enable_thinking` when it sets them.
    fn params_for(base: &GenerationParams, request: &ChatRequest) -> GenerationParams {
        let mut p = base.clone();
        if let Some(n) = request.max_tokens {
            p.max_tokens = n as usize;
        }
        if let Some(t) = request.temperature {
            p.sampling.temperature = t;
        }
        if request.enable_thinking.is_some() {
            p.enable_thinking = request.enable_thinking;
        }
        p
    }

    /// A session for a request with adapter set `adapters`: an idle one that ran with the same
    /// set if there is one (its cache can be reused), else any idle one or a new one. Its set is
    /// then made `adapters`, which empties a cache computed under another set.
    fn checkout(&self, adapters: &crate::lora::LoraSet) -> Result<Session> {
        let found = {
            let mut idle = lock(&self.idle.0);
            match idle.iter().rposition(|s| s.adapters().same_as(adapters)) {
                Some(i) => Some(idle.remove(i)),
                None => idle.pop(),
            }
        };
        let mut session = match found {
            Some(s) => s,
            None => self.engine.new_session(self.session_config.clone())?,
        };
        session.set_adapter_set(adapters.clone())?;
        Ok(session)
    }

    fn checkin(&self, session: Session) {
        if !self.reuse_sessions {
            return;
        }
        let mut idle = lock(&self.idle.0);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    /// Generates the answer to `request` with `base` as the generation settings (the request's
    /// `max_tokens`/`temperature` override them), streaming pieces to `sink` (`false` stops).
    /// Blocking. A panic inside the backend becomes [`Error::Backend`].
    pub fn generate_with(
        &self,
        request: &ChatRequest,
        base: &GenerationParams,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate_cancellable(request, base, &CancelHandle::new(), sink)
    }

    /// [`LocalEngine::generate_with`], stopped by `cancel` (this request's own handle, also
    /// honoured when it fired before the call) or by [`LocalEngine::cancel_running`].
    pub fn generate_cancellable(
        &self,
        request: &ChatRequest,
        base: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate_rendered(request, None, None, base, cancel, sink).map(|(g, _)| g)
    }

    /// [`LocalEngine::generate_cancellable`] with `tools` passed to the chat template; the
    /// answer constrained by `constrain`'s tool choice where set (in the template's format, after
    /// any thinking the prompt's end allows: the [`Thinking`] returned).
    fn generate_rendered(
        &self,
        request: &ChatRequest,
        tools: Option<&serde_json::Value>,
        constrain: Option<&Tools>,
        base: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(Generation, Thinking)> {
        let _registered = self.running.register(cancel);
        request.validate()?;
        let mut params = Self::params_for(base, request);
        params.validate()?;
        let ids = self.encode(request, tools, params.enable_thinking)?;
        let thinking = crate::session::thinking_after(&self.engine, &ids, params.max_tokens);
        if let Some(t) = constrain {
            params.constraint = t.constraint_for_model(self.engine.template().tool_format(), thinking);
        }
        let mut session = self.checkout(&request.adapters)?;
        // A hybrid model's state is checkpointed (and the prefill split) where a session's chat
        // turn would do it for this conversation: a follow-up request can then go back there,
        // and the answer is the one a `Session` gives (same passes, same rounding).
        let (anchors, departure) = if session.is_recurrent() {
            self.turn_marks(request, tools, params.enable_thinking, &ids)
        } else {
            (Vec::new(), None)
        };
        let result =
            catch_unwind(AssertUnwindSafe(|| session.generate(ids, &params, cancel, sink, &anchors, departure)));
        match result {
            Ok(Ok(g)) => {
                self.checkin(session);
                Ok((g, thinking))
            }
            // A failed or panicked generation may leave the cache half-written: drop the session.
            Ok(Err(e)) => Err(e),
            Err(_) => {
                log::error!("local generation panicked; the session was dropped");
                Err(Error::Backend { reason: "local generation panicked".into() })
            }
        }
    }

    /// [`LocalEngine::generate_cancellable`] under `output`'s constraint and tools: the tools go
    /// to the chat template where it takes them (Qwen 2.5/3, Llama 3.x: [`ToolFormat`]), else
    /// their block joins the system prompt (built-in format, [`crate::structured::tools`]); the
    /// tool choice constrains the answer unless `output` sets a constraint itself, and the
    /// answer's calls are parsed (ids `call_<n>_<i>`, `n` counted per engine).
    pub fn generate_structured_cancellable(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        base: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<StructuredAnswer> {
        self.generate_structured_metered(request, output, base, cancel, sink, &mut None)
    }

    /// [`LocalEngine::generate_structured_cancellable`], leaving the generation's metrics and
    /// stop reason in `last`.
    fn generate_structured_metered(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        base: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn FnMut(&str) -> bool,
        last: &mut Option<(Metrics, StopReason)>,
    ) -> Result<StructuredAnswer> {
        if let Some(t) = &output.tools {
            t.validate()?;
        }
        let format = self.engine.template().tool_format();
        let tools = output.tools.as_ref().filter(|t| t.choice != ToolChoice::None);
        // The tool choice constrains the answer unless `output` sets a constraint.
        let constrain = tools.filter(|_| output.constraint.is_text());
        let mut with_tools;
        let mut template_tools = None;
        let request = match tools {
            Some(t) => {
                if format == ToolFormat::Builtin {
                    with_tools = request.clone();
                    with_tools.messages.insert(0, ChatMessage::new(Role::System, t.system_block()));
                    &with_tools
                } else {
                    template_tools = t.template_tools();
                    request
                }
            }
            None => request,
        };
        let base = GenerationParams { constraint: output.constraint.clone(), ..base.clone() };
        let (g, thinking) = self.generate_rendered(request, template_tools.as_ref(), constrain, &base, cancel, sink)?;
        *last = Some((g.metrics.clone(), g.stop_reason));
        let tool_calls = match tools {
            Some(t) if g.valid != Some(false) => t.parse_calls_thinking(
                format,
                thinking,
                &g.text,
                self.tool_turns.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize,
            ),
            _ => Vec::new(),
        };
        Ok(StructuredAnswer { valid: g.valid, tool_calls, answer: local_answer(g) })
    }

    /// Measures the local model's confidence on `request`: the mean token log-probability (natural
    /// log, ≤ 0) of a short greedy draft of `draft_tokens` tokens, for
    /// [`RequestMeta::local_mean_logprob`] and the policy's `low_confidence_logprob` trigger.
    /// With session reuse on, the prompt prefilled here is reused by the answer that follows, so
    /// the draft costs little more than `draft_tokens` decode steps.
    pub fn draft_confidence(&self, request: &ChatRequest, draft_tokens: usize) -> Result<f32> {
        if draft_tokens == 0 || draft_tokens > 256 {
            return Err(Error::InvalidParameter { name: "draft_tokens", reason: "must be in 1..=256".into() });
        }
        let mut draft = request.clone();
        draft.max_tokens = None;
        draft.temperature = None;
        let params = GenerationParams { stop: Vec::new(), ..GenerationParams::greedy(draft_tokens) };
        let g = self.generate_with(&draft, &params, &mut |_| true)?;
        if g.token_ids.is_empty() || !g.mean_logprob.is_finite() {
            // Nothing measured (the model ended at once): no signal rather than a made-up one.
            return Err(Error::InvalidParameter {
                name: "draft_tokens",
                reason: "the draft produced no tokens".into(),
            });
        }
        Ok(g.mean_logprob)
    }

    /// Answers `request` through `router` with this engine as the local model and `params` as
    /// the local generation settings, returning the local metrics alongside the answer.
    pub fn answer(
        &self,
        router: &Router,
        request: &ChatRequest,
        meta: &RequestMeta,
        params: &GenerationParams,
        sink: &mut dyn AnswerSink,
    ) -> Result<EngineAnswer> {
        self.answer_cancellable(router, request, meta, params, &CancelHandle::new(), sink)
    }

    /// [`LocalEngine::answer`] with this request's own cancel handle: a cancel stops the cloud
    /// stream before its next piece and the local generation before its next token or prefill
    /// chunk (the answer ends with [`FinishReason::Cancelled`]); a request whose handle fired
    /// before the call fails with [`Error::Cancelled`] before anything is decided, audited or
    /// sent. Other requests running at the same time are not affected.
    pub fn answer_cancellable(
        &self,
        router: &Router,
        request: &ChatRequest,
        meta: &RequestMeta,
        params: &GenerationParams,
        cancel: &CancelHandle,
        sink: &mut dyn AnswerSink,
    ) -> Result<EngineAnswer> {
        let _registered = self.running.register(cancel);
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let model = WithParams { engine: self, params, cancel, last: Mutex::new(None) };
        let mut sink = StopOnCancel { sink, cancel };
        let answer = router.answer(&model, request, meta, &mut sink)?;
        let last = model.last.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok(EngineAnswer {
            answer,
            local_metrics: last.as_ref().map(|(m, _)| m.clone()),
            local_stop_reason: last.map(|(_, s)| s),
        })
    }
}

/// Refuses further pieces once the request's handle fired (stops a cloud stream).
struct StopOnCancel<'a> {
    sink: &'a mut dyn AnswerSink,
    cancel: &'a CancelHandle,
}

impl AnswerSink for StopOnCancel<'_> {
    fn on_text(&mut self, text: &str) -> bool {
        !self.cancel.is_cancelled() && self.sink.on_text(text)
    }

    fn on_reset(&mut self) {
        self.sink.on_reset();
    }
}

/// The request as chat-template turns (see the module docs for the normalisation).
fn turns(request: &ChatRequest, default_system: Option<&str>, format: ToolFormat) -> Vec<TurnMessage> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<TurnMessage> = Vec::new();
    // Call id -> tool name, for the results (built-in format: a result names its tool).
    let mut call_names = std::collections::HashMap::new();
    for mut m in request.wire_messages() {
        if !m.tool_calls.is_empty() {
            // The call as the model writes it in the format.
            let calls: Vec<(String, serde_json::Value)> =
                m.tool_calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
            for c in &m.tool_calls {
                call_names.insert(c.id.clone(), c.name.clone());
            }
            m.content = Tools::call_text(format, &calls);
        }
        let role = match m.role {
            // Each result is its own `tool` message in a family format.
            Role::Tool if format != ToolFormat::Builtin => TurnRole::Tool,
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                let name = call_names.get(&id).cloned().unwrap_or_default();
                m.content = Tools::result_turn(&[ToolResult { id, name, content: m.content }]);
                TurnRole::User
            }
            Role::System => {
                if !m.content.trim().is_empty() {
                    system.push(m.content);
                }
                continue;
            }
            Role::User => TurnRole::User,
            Role::Assistant => TurnRole::Assistant,
        };
        match turns.last_mut() {
            Some(last) if last.role == role && role != TurnRole::Tool => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => turns.push(TurnMessage::new(role, m.content)),
        }
    }
    if system.is_empty() {
        system.extend(default_system.filter(|s| !s.trim().is_empty()).map(str::to_string));
    }
    let mut out = Vec::with_capacity(turns.len() + 1);
    if !system.is_empty() {
        out.push(TurnMessage::new(TurnRole::System, system.join("\n\n")));
    }
    out.extend(turns);
    out
}

fn local_answer(g: Generation) -> LocalAnswer {
    LocalAnswer {
        finish_reason: finish_reason(g.stop_reason),
        prompt_tokens: g.metrics.prompt_tokens,
        completion_tokens: g.metrics.generated_tokens,
        text: g.text,
    }
}

impl LocalModel for LocalEngine {
    fn generate(&self, request: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> Result<LocalAnswer> {
        self.generate_with(request, &self.params, sink).map(local_answer)
    }

    fn generate_structured(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<StructuredAnswer> {
        self.generate_structured_cancellable(request, output, &self.params, &CancelHandle::new(), sink)
    }

    fn context_limit(&self) -> usize {
        self.session_config.max_context
    }

    fn count_tokens(&self, text: &str) -> usize {
        // On a tokenizer failure, the byte length: an upper bound for every vocabulary we load.
        self.engine.tokenizer().encode_user_text(text, false).map(|ids| ids.len()).unwrap_or(text.len())
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }
}

/// [`LocalEngine`] with per-call settings, remembering the last generation's metrics.
struct WithParams<'a> {
    engine: &'a LocalEngine,
    params: &'a GenerationParams,
    cancel: &'a CancelHandle,
    last: Mutex<Option<(Metrics, StopReason)>>,
}

impl LocalModel for WithParams<'_> {
    fn generate(&self, request: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> Result<LocalAnswer> {
        let g = self.engine.generate_cancellable(request, self.params, self.cancel, sink)?;
        *lock(&self.last) = Some((g.metrics.clone(), g.stop_reason));
        Ok(local_answer(g))
    }
    fn generate_structured(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<StructuredAnswer> {
        // With the local metrics remembered, as for `generate`.
        let mut last = None;
        let a = self.engine.generate_structured_metered(request, output, self.params, self.cancel, sink, &mut last)?;
        *lock(&self.last) = last;
        Ok(a)
    }
    fn context_limit(&self) -> usize {
        self.engine.context_limit()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.engine.count_tokens(text)
    }
    fn model_id(&self) -> String {
        self.engine.model_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<LocalEngine>();
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason(StopReason::Eos), FinishReason::Stop);
        assert_eq!(finish_reason(StopReason::StopSequence), FinishReason::Stop);
        assert_eq!(finish_reason(StopReason::MaxTokens), FinishReason::Length);
        assert_eq!(finish_reason(StopReason::ContextFull), FinishReason::Length);
        assert_eq!(finish_reason(StopReason::Cancelled), FinishReason::Cancelled);
    }

    #[test]
    fn request_overrides_max_tokens_and_temperature() {
        let base = GenerationParams::default();
        let req = ChatRequest { max_tokens: Some(7), temperature: Some(0.0), ..ChatRequest::user("x") };
        let p = LocalEngine::params_for(&base, &req);
        assert_eq!(p.max_tokens, 7);
        assert_eq!(p.sampling.temperature, 0.0);
        assert_eq!(p.sampling.top_k, base.sampling.top_k);
        assert_eq!(LocalEngine::params_for(&base, &ChatRequest::user("x")), base);
    }

    #[test]
    fn turns_are_normalised_for_strict_templates() {
        let req = ChatRequest {
            messages: vec![
                super::super::ChatMessage::new(Role::System, "be brief"),
                super::super::ChatMessage::new(Role::User, "a"),
                super::super::ChatMessage::new(Role::User, "b"),
                super::super::ChatMessage::new(Role::Assistant, "c"),
                super::super::ChatMessage::new(Role::System, "and kind"),
                super::super::ChatMessage::new(Role::User, "d"),
            ],
            attachments: vec!["doc".into()],
            ..ChatRequest::default()
        };
        let t = turns(&req, Some("ignored: the request has its own"), ToolFormat::Builtin);
        let roles: Vec<TurnRole> = t.iter().map(|m| m.role).collect();
        assert_eq!(roles, [TurnRole::System, TurnRole::User, TurnRole::Assistant, TurnRole::User]);
        assert_eq!(t[0].content, "be brief\n\nand kind");
        assert_eq!(t[1].content, "a\n\nb");
        assert_eq!(t[3].content, "d\n\n[Attachment 1]\ndoc");
        let t = turns(&ChatRequest::user("q"), Some("sys"), ToolFormat::Builtin);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].role, t[0].content.as_str()), (TurnRole::System, "sys"));
        assert_eq!(turns(&ChatRequest::user("q"), Some("  "), ToolFormat::Builtin).len(), 1);
    }
}
