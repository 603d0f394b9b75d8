//! The offline-first privacy router: sensitive data never leaves the device, and the cloud is used
//! only when it helps.
//!
//! A request is answered on the device unless *every* condition for the cloud holds (see
//! [`policy`]): the app enabled the cloud and gave an endpoint, no part of the request is
//! sensitive, there is a reason to escalate, the network is reachable and the budgets allow. Any
//! error while deciding keeps the request local.
//!
//! The router decides on `(text, metadata, policy)` alone. Local generation is abstracted by the
//! [`LocalModel`] trait, which the engine implements, so this module imports neither `model`,
//! `session` nor `engine`.
//!
//! # Walkthrough
//!
//! ```no_run
//! use edgewise_core::router::{
//!     AnswerSink, ChatRequest, LocalAnswer, LocalModel, RequestMeta, Router, RouterConfig,
//! };
//! # struct MyEngine;
//! # impl LocalModel for MyEngine {
//! #     fn generate(&self, _: &ChatRequest, _: &mut dyn FnMut(&str) -> bool)
//! #         -> edgewise_core::Result<LocalAnswer> { unimplemented!() }
//! #     fn context_limit(&self) -> usize { 32_768 }
//! #     fn count_tokens(&self, text: &str) -> usize { text.len() / 4 }
//! # }
//! # fn main() -> edgewise_core::Result<()> {
//! // 1. Configure once: the policy (cloud off by default), the endpoint, where the logs live.
//! let mut config = RouterConfig::local_only("/data/app/router");
//! config.policy.cloud_enabled = true;
//! config.cloud = Some(edgewise_core::router::cloud::CloudConfig::new(
//!     "https://api.example.com/v1",
//!     "small-model",
//! ));
//! let router = Router::new(config)?;
//!
//! // 2. Per request: the router decides, answers (cloud or local, with fallback) and audits.
//! let request = ChatRequest::user("Summarise the plot of Hamlet in two lines.");
//! let meta = RequestMeta { cloud_requested: true, ..RequestMeta::default() };
//! let mut sink = |text: &str| { print!("{text}"); true };
//! let answer = router.answer(&MyEngine, &request, &meta, &mut sink)?;
//! println!("\nserved by {:?}, reasons {:?}", answer.served_by, answer.decision.reasons);
//!
//! // 3. When connectivity returns, send what was queued while offline.
//! let report = router.drain_queue()?;
//! # let _ = report; Ok(()) }
//! ```
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`pii`] | on-device sensitivity (PII) detection |
//! | [`policy`] | [`RouterPolicy`], [`RouteDecision`], budgets, reachability probes, `decide` |
//! | [`cloud`] | [`cloud::prepare_request`] (the one egress point), [`cloud::Transport`], the OpenAI-compatible client, SSE |
//! | [`queue`] | the crash-safe offline queue (write-ahead log) |
//! | [`audit`] | the append-only JSON-lines audit log and its statistics |
//! | [`serve`] | an OpenAI-compatible HTTP server over any [`LocalModel`] |
//! | [`local`] | [`LocalEngine`]: the inference engine as a [`LocalModel`] (the one bridge to `engine`) |

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::structured::tools::{ToolCall, Tools};
use crate::structured::OutputConstraint;
use crate::Result;

pub mod audit;
pub mod cloud;
pub mod local;
pub use edgewise_pii as pii;
pub mod policy;
pub mod queue;
pub mod serve;

pub use local::LocalEngine;
pub use policy::{Reason, RequestMeta, RouteDecision, RouterPolicy, Target};

use audit::{AuditEvent, AuditLog};
use cloud::{CloudClient, CloudConfig, FailureKind, Transport};
use policy::{PolicyEngine, Reachability};
use queue::{DrainReport, OfflineQueue, QueueConfig};

// ---------------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------------

/// Who wrote a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// The person using the app.
    User,
    /// The model.
    Assistant,
    /// A tool's result ([`ChatMessage::tool_result`]).
    Tool,
}

impl Role {
    /// The OpenAI wire name (`system`, `user`, `assistant`, `tool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
///
/// `Debug` prints the role and the length only, never the text.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// An assistant message's tool calls (OpenAI's `tool_calls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A [`Role::Tool`] message's call id (OpenAI's `tool_call_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    /// An assistant message that made `calls`.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Self { tool_calls: calls, ..Self::new(Role::Assistant, "") }
    }

    /// The result of the call `id`.
    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(id.into()), ..Self::new(Role::Tool, content) }
    }
}

impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChatMessage {{ role: {}, content: <{} bytes>, tool_calls: {} }}",
            self.role.as_str(),
            self.content.len(),
            self.tool_calls.len()
        )
    }
}

/// A chat request: system prompt, history and the new message (all in `messages`, in order),
/// plus any attached text. This is what the router scans, part by part, before anything can leave.
///
/// `Debug` prints counts and lengths only, never the text.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// System prompt, history and the new message, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Attached documents (plain text). On the wire they are appended to the last user message,
    /// see [`ChatRequest::wire_messages`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// Upper bound on generated tokens; `None` uses the policy's `expected_output_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None` leaves it to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The LoRA adapters and scales the local model answers with (empty: the base model). The
    /// cloud path ignores them; they are never serialized (an offline queue's replay runs
    /// without them). A pooled session whose cache was computed under another set is emptied
    /// first, so no KV computed under one set serves another.
    #[serde(skip)]
    pub adapters: crate::lora::LoraSet,
    /// Tools the model may call (OpenAI's `tools` / `tool_choice` on the cloud; the local model's
    /// tool format on the device). Their definitions are part of what the router inspects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Tools>,
    /// The local model's chat template `enable_thinking` (Qwen 3 / 3.5; `None`: the
    /// template's default; [`crate::session::GenerationParams::enable_thinking`]). The cloud
    /// path ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
}

impl ChatRequest {
    /// A request with a single user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self { messages: vec![ChatMessage::new(Role::User, text)], ..Self::default() }
    }

    /// Adds a message at the end (builder style).
    pub fn with_message(mut self, role: Role, text: impl Into<String>) -> Self {
        self.messages.push(ChatMessage::new(role, text));
        self
    }

    /// Puts a system prompt first (builder style).
    pub fn with_system(mut self, text: impl Into<String>) -> Self {
        self.messages.insert(0, ChatMessage::new(Role::System, text));
        self
    }

    /// Answers locally with these LoRA adapters and scales (builder style; see
    /// [`crate::lora::LoraSet::new`] for the rules: scale 0 drops one, a non-finite scale is an
    /// error).
    pub fn with_adapters(mut self, adapters: &[(std::sync::Arc<crate::lora::LoraAdapter>, f32)]) -> Result<Self> {
        self.adapters = crate::lora::LoraSet::new(adapters)?;
        Ok(self)
    }

    /// Adds an attached document (builder style).
    pub fn with_attachment(mut self, text: impl Into<String>) -> Self {
        self.attachments.push(text.into());
        self
    }

    /// The text of each message, then each attachment (see [`ChatRequest::all_parts`] for
    /// everything the router inspects).
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().map(|m| m.content.as_str()).chain(self.attachments.iter().map(String::as_str))
    }

    /// The text of the tools and calls: per tool its name, description and every key and value
    /// of its parameter schema; per call (in the messages) its id, name and every key and value
    /// of its arguments (numbers too); per tool result its call id. `None` when some of it
    /// cannot be inspected (nested deeper than [`MAX_INSPECT_DEPTH`]): the request then stays
    /// on the device.
    pub fn tool_parts(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for t in self.tools.iter().flat_map(|t| &t.tools) {
            let mut text = format!("{}: {}", t.name, t.description);
            flatten_json(&t.parameters, "", 0, &mut text)?;
            out.push(text);
        }
        for m in &self.messages {
            for c in &m.tool_calls {
                let mut text = format!("{} {}", c.id, c.name);
                flatten_json(&c.arguments, "", 0, &mut text)?;
                out.push(text);
            }
            if let Some(id) = &m.tool_call_id {
                out.push(id.clone());
            }
        }
        Some(out)
    }

    /// Every piece of text that could leave the device: [`ChatRequest::parts`], then
    /// [`ChatRequest::tool_parts`]. The router scans each (and their concatenation) for personal
    /// data. `None`: something cannot be inspected (the request stays local).
    pub fn all_parts(&self) -> Option<Vec<std::borrow::Cow<'_, str>>> {
        let mut v: Vec<std::borrow::Cow<'_, str>> = self.parts().map(std::borrow::Cow::Borrowed).collect();
        v.extend(self.tool_parts()?.into_iter().map(std::borrow::Cow::Owned));
        Some(v)
    }

    /// Total bytes of text in the request (tools and calls included, as JSON).
    pub fn text_len(&self) -> usize {
        let tools = self
            .tools
            .iter()
            .flat_map(|t| &t.tools)
            .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len());
        let calls = self
            .messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .map(|c| c.id.len() + c.name.len() + c.arguments.to_string().len());
        let ids = self.messages.iter().filter_map(|m| m.tool_call_id.as_ref()).map(String::len);
        self.parts().map(str::len).chain(tools).chain(calls).chain(ids).fold(0, usize::saturating_add)
    }

    /// The messages as they are sent to a chat-completions API: attachments are appended to the
    /// last user message (or become a new user message when there is none), each introduced by
    /// `[Attachment N]`. Local models should use the same form so both paths see the same prompt.
    pub fn wire_messages(&self) -> Vec<ChatMessage> {
        let mut out = self.messages.clone();
        if self.attachments.is_empty() {
            return out;
        }
        let mut extra = String::new();
        for (i, a) in self.attachments.iter().enumerate() {
            extra.push_str(&format!("\n\n[Attachment {}]\n", i + 1));
            extra.push_str(a);
        }
        match out.iter_mut().rev().find(|m| m.role == Role::User) {
            Some(last) => last.content.push_str(&extra),
            None => out.push(ChatMessage::new(Role::User, extra.trim_start().to_string())),
        }
        out
    }

    /// Checks the request is usable: at least one message, and at most [`crate::MAX_INPUT_BYTES`]
    /// of text in all its messages and attachments ([`crate::Error::InputTooLarge`]).
    pub fn validate(&self) -> Result<()> {
        if self.messages.is_empty() {
            return Err(crate::Error::InvalidParameter { name: "messages", reason: "no messages".into() });
        }
        // Every part counts: the limit is on what one request hands the device (and the cloud).
        crate::check_input_len(self.text_len())?;
        if let Some(t) = &self.tools {
            t.validate()?;
        }
        if let Some(t) = self.temperature {
            if !t.is_finite() || t < 0.0 {
                return Err(crate::Error::InvalidParameter {
                    name: "temperature",
                    reason: "must be finite and >= 0".into(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg_bytes: usize = self.messages.iter().map(|m| m.content.len()).sum();
        let att_bytes: usize = self.attachments.iter().map(String::len).sum();
        write!(
            f,
            "ChatRequest {{ messages: {} (<{} bytes>), attachments: {} (<{} bytes>), max_tokens: {:?}, temperature: {:?}, adapters: {} }}",
            self.messages.len(),
            msg_bytes,
            self.attachments.len(),
            att_bytes,
            self.max_tokens,
            self.temperature,
            self.adapters.len()
        )
    }
}

/// How deep the router follows a tool schema or call arguments; anything deeper cannot be
/// inspected and keeps the request on the device.
pub const MAX_INSPECT_DEPTH: usize = 32;

/// Appends every key and leaf of `v` to `out`, one `path: value` line each (numbers and booleans
/// as written). `None` past [`MAX_INSPECT_DEPTH`].
fn flatten_json(v: &serde_json::Value, path: &str, depth: usize, out: &mut String) -> Option<()> {
    use serde_json::Value;
    if depth > MAX_INSPECT_DEPTH {
        return None;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                flatten_json(x, &p, depth + 1, out)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                flatten_json(x, path, depth + 1, out)?;
            }
        }
        Value::String(s) => out.push_str(&format!("\n{path}: {s}")),
        Value::Null => {}
        other => out.push_str(&format!("\n{path}: {other}")),
    }
    Some(())
}

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer (end-of-turn / end-of-sequence).
    Stop,
    /// The token limit was reached.
    Length,
    /// The sink asked to stop.
    Cancelled,
}

impl FinishReason {
    /// The OpenAI wire name (`stop`, `length`; a cancel is reported as `stop`).
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::Cancelled => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a [`LocalModel`] returns after generating.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalAnswer {
    /// The whole answer text (what was streamed to the sink, concatenated).
    pub text: String,
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

impl fmt::Debug for LocalAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalAnswer")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("finish_reason", &self.finish_reason)
            .finish()
    }
}

/// Structured output for one request: what `edgewise serve` makes of OpenAI's `response_format`
/// and `tools` / `tool_choice` ([`LocalModel::generate_structured`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StructuredRequest {
    /// The answer's constraint ([`OutputConstraint::Text`]: none).
    pub constraint: OutputConstraint,
    /// Tools offered to the model (the built-in prompt format of [`crate::structured::tools`]).
    pub tools: Option<Tools>,
}

impl StructuredRequest {
    /// Whether this asks for nothing beyond free text.
    pub fn is_plain(&self) -> bool {
        self.constraint.is_text() && self.tools.is_none()
    }
}

/// A [`LocalModel::generate_structured`] answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredAnswer {
    /// The text answer (for a tool call, the call's JSON as the model wrote it).
    pub answer: LocalAnswer,
    /// The tool calls the answer makes (empty for a text answer).
    pub tool_calls: Vec<ToolCall>,
    /// With a constraint: whether the text is a complete match (never after a length cut).
    pub valid: Option<bool>,
}

/// Local generation, as the router and the server see it. The engine implements this for a loaded
/// model; tests use a fake.
pub trait LocalModel {
    /// Generates an answer to `request`, streaming text pieces to `sink` as they are produced.
    /// `sink` returns `false` to ask for a stop (the answer then ends with
    /// [`FinishReason::Cancelled`]). Blocking; call it from a background thread.
    fn generate(&self, request: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> Result<LocalAnswer>;

    /// [`LocalModel::generate`] under a constraint and/or with tools. The default handles only
    /// a plain request (a model without constrained decoding refuses the rest with
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter)).
    fn generate_structured(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<StructuredAnswer> {
        if !output.is_plain() {
            return Err(crate::Error::InvalidParameter {
                name: "response_format",
                reason: "this local model has no constrained decoding".into(),
            });
        }
        let answer = self.generate(request, sink)?;
        Ok(StructuredAnswer { answer, tool_calls: Vec::new(), valid: None })
    }

    /// Context window of the local model, in tokens.
    fn context_limit(&self) -> usize;

    /// Number of tokens `text` takes for the local model's tokenizer.
    fn count_tokens(&self, text: &str) -> usize;

    /// Model id shown by the server's `/v1/models`.
    fn model_id(&self) -> String {
        "edgewise-local".to_string()
    }
}

impl<T: LocalModel + ?Sized> LocalModel for &T {
    fn generate(&self, request: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> Result<LocalAnswer> {
        (**self).generate(request, sink)
    }
    fn generate_structured(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<StructuredAnswer> {
        (**self).generate_structured(request, output, sink)
    }
    fn context_limit(&self) -> usize {
        (**self).context_limit()
    }
    fn count_tokens(&self, text: &str) -> usize {
        (**self).count_tokens(text)
    }
    fn model_id(&self) -> String {
        (**self).model_id()
    }
}

/// Receives an answer as it streams, from the cloud or the device.
///
/// **Reset contract:** when the cloud fails *after* some text was already delivered, the router
/// calls [`AnswerSink::on_reset`] once, then the local answer streams from its beginning. A UI
/// should clear what it showed for this answer when it gets `on_reset`. The final
/// [`RoutedAnswer::text`] holds only the answer that completed (never a mix of both).
///
/// Any `FnMut(&str) -> bool` closure is a sink whose `on_reset` does nothing.
pub trait AnswerSink {
    /// A piece of answer text. Return `false` to stop the answer.
    fn on_text(&mut self, text: &str) -> bool;
    /// Discard everything delivered so far for this answer: the answer restarts.
    fn on_reset(&mut self) {}
}

impl<F: FnMut(&str) -> bool> AnswerSink for F {
    fn on_text(&mut self, text: &str) -> bool {
        self(text)
    }
}

/// A failed cloud attempt that the router recovered from by answering locally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    /// What went wrong.
    pub kind: FailureKind,
    /// The HTTP status, when the cloud answered with an error status.
    pub http_status: Option<u16>,
    /// Cloud attempts made (1 + retries).
    pub attempts: u32,
    /// Characters of cloud text that had been streamed to the sink before the failure and were
    /// then discarded with [`AnswerSink::on_reset`] (0 when nothing had been streamed).
    pub discarded_chars: usize,
}

/// The result of [`Router::answer`].
#[derive(Clone, PartialEq, Serialize)]
pub struct RoutedAnswer {
    /// The answer text.
    pub text: String,
    /// What the policy decided, and why.
    pub decision: RouteDecision,
    /// Who produced `text`: equals `decision.target` unless the cloud failed (then `Local`).
    pub served_by: Target,
    /// Set when the cloud was chosen but failed and the local model answered instead.
    pub fallback: Option<Fallback>,
    /// Offline-queue id, when the request was also queued for a cloud answer later.
    pub queued: Option<u64>,
    /// Prompt tokens (as counted by whoever answered; the local count when unknown).
    pub prompt_tokens: usize,
    /// Answer tokens.
    pub completion_tokens: usize,
    /// Why the answer ended.
    pub finish_reason: FinishReason,
    /// The tool calls the answer makes (with [`ChatRequest::tools`]; empty for a text answer).
    pub tool_calls: Vec<ToolCall>,
}

impl fmt::Debug for RoutedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedAnswer")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("decision", &self.decision)
            .field("served_by", &self.served_by)
            .field("fallback", &self.fallback)
            .field("queued", &self.queued)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("finish_reason", &self.finish_reason)
            .field("tool_calls", &self.tool_calls.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------------------------

/// Everything a [`Router`] needs, validated once by [`Router::new`].
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// The routing policy (cloud off by default).
    pub policy: RouterPolicy,
    /// The cloud endpoint; `None` keeps everything local.
    pub cloud: Option<CloudConfig>,
    /// The audit log file (JSON lines, append-only).
    pub audit_path: PathBuf,
    /// The offline-queue file; `None` disables queueing even when the policy opts in.
    pub queue_path: Option<PathBuf>,
    /// Offline-queue bounds.
    pub queue: QueueConfig,
}

impl RouterConfig {
    /// Local-only defaults with the audit log at `dir/audit.jsonl` and the queue at
    /// `dir/queue.wal`.
    pub fn local_only(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            policy: RouterPolicy::default(),
            cloud: None,
            audit_path: dir.join("audit.jsonl"),
            queue_path: Some(dir.join("queue.wal")),
            queue: QueueConfig::default(),
        }
    }
}

/// The offline-first router: decides, answers (cloud with local fallback, or local), queues while
/// offline, and audits every decision and every egress. `Send + Sync`; share it behind an `Arc`.
pub struct Router {
    engine: PolicyEngine,
    cloud: Option<CloudClient>,
    transport: Arc<dyn Transport>,
    queue: Option<OfflineQueue>,
    audit: AuditLog,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("policy", self.engine.policy())
            .field("cloud", &self.cloud)
            .field("queue", &self.queue.as_ref().map(|q| q.path().to_path_buf()))
            .field("audit", &self.audit.path())
            .finish()
    }
}

impl Router {
    /// Validates `config`, opens the audit log and the queue, and uses the default transport
    /// (ureq + rustls) and reachability probe (TCP connect to the endpoint, 1.5 s).
    pub fn new(config: RouterConfig) -> Result<Self> {
        config.policy.validate()?;
        let cloud = match config.cloud {
            Some(c) => Some(CloudClient::new(c)?),
            None => None,
        };
        let audit = AuditLog::open(&config.audit_path)?;
        let queue = match &config.queue_path {
            Some(p) => Some(OfflineQueue::open(p, config.queue.clone())?),
            None => None,
        };
        Ok(Self {
            engine: PolicyEngine::new(config.policy, Arc::new(policy::TcpProbe::default())),
            cloud,
            transport: Arc::new(cloud::UreqTransport::new()),
            queue,
            audit,
        })
    }

    /// Replaces the transport (host-provided HTTP stack, or a test double).
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = transport;
        self
    }

    /// Replaces the reachability probe.
    pub fn with_reachability(mut self, probe: Arc<dyn Reachability>) -> Self {
        self.engine.set_probe(probe);
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &RouterPolicy {
        self.engine.policy()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The offline queue, when one is configured.
    pub fn queue(&self) -> Option<&OfflineQueue> {
        self.queue.as_ref()
    }

    /// Decides where `request` should run. Never fails: any error (or panic) on the decision path
    /// yields a local decision with [`Reason::DecisionError`].
    pub fn decide(&self, local: &dyn LocalModel, request: &ChatRequest, meta: &RequestMeta) -> RouteDecision {
        self.decide_counted(local, request, meta).0
    }

    /// The decision plus the prompt-token count it used (0 when counting failed).
    fn decide_counted(
        &self,
        local: &dyn LocalModel,
        request: &ChatRequest,
        meta: &RequestMeta,
    ) -> (RouteDecision, usize) {
        let Some(parts) = request.all_parts() else {
            log::warn!("router: a tool schema or call is too deep to inspect; routing local");
            return (RouteDecision::fail_closed(Vec::new()), 0);
        };
        let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let tokens: usize = parts.iter().map(|p| local.count_tokens(p)).sum();
            (tokens, local.context_limit())
        }));
        let (prompt_tokens, context_limit) = match counted {
            Ok(v) => v,
            Err(_) => {
                log::warn!("router: token counting panicked; routing local");
                return (RouteDecision::fail_closed(Vec::new()), 0);
            }
        };
        let endpoint = self.cloud.as_ref().map(|c| c.config().base_url.as_str());
        let input = policy::DecisionInput { request, meta, endpoint, prompt_tokens, context_limit };
        (self.engine.decide(&input), prompt_tokens)
    }

    /// Answers `request`: decides, then either streams the cloud answer (falling back to
    /// `local` on any failure, see [`AnswerSink`] for the reset contract) or generates locally,
    /// queueing the request for a later cloud answer when the policy wanted the cloud, the
    /// network is down and the app opted in. Every decision is written to the audit log.
    ///
    /// Errors only when local generation itself fails (there is nothing left to fall back to).
    pub fn answer(
        &self,
        local: &dyn LocalModel,
        request: &ChatRequest,
        meta: &RequestMeta,
        sink: &mut dyn AnswerSink,
    ) -> Result<RoutedAnswer> {
        request.validate()?;
        let (decision, prompt_tokens) = self.decide_counted(local, request, meta);
        let mut fallback = None;
        let mut queued = None;

        if decision.target == Target::Cloud {
            if let Some(client) = &self.cloud {
                let mut delivered = 0usize;
                let mut cloud_sink = |t: &str| {
                    delivered += t.chars().count();
                    sink.on_text(t)
                };
                // The cloud's calls are checked against the tools like nothing else it says can
                // be: an invalid one is a failed cloud answer, and the device answers instead.
                let result =
                    client.complete(self.transport.as_ref(), &self.audit, request, &mut cloud_sink).and_then(|ans| {
                        match check_cloud_calls(request, &ans) {
                            Ok(()) => Ok(ans),
                            Err(e) => {
                                log::warn!("router: {e}");
                                Err(cloud::CloudFailure {
                                    attempts: ans.attempts,
                                    ..cloud::CloudFailure::new(FailureKind::InvalidToolCall)
                                })
                            }
                        }
                    });
                match result {
                    Ok(ans) => {
                        let completion_tokens = ans.completion_tokens.unwrap_or_else(|| local.count_tokens(&ans.text));
                        let prompt_tokens = ans.prompt_tokens.unwrap_or(prompt_tokens);
                        let out = RoutedAnswer {
                            text: ans.text,
                            decision,
                            served_by: Target::Cloud,
                            fallback: None,
                            queued: None,
                            prompt_tokens,
                            completion_tokens,
                            finish_reason: ans.finish_reason,
                            tool_calls: ans.tool_calls,
                        };
                        self.record(&out, ans.attempts);
                        return Ok(out);
                    }
                    Err(failure) => {
                        log::warn!("router: cloud failed ({failure}); answering locally");
                        if delivered > 0 {
                            sink.on_reset();
                        }
                        // A tool request is not queued: its calls are for the app now, not later.
                        if failure.kind == FailureKind::Connect
                            && self.engine.policy().queue_when_offline
                            && request.tools.is_none()
                        {
                            queued = self.try_enqueue(request);
                        }
                        fallback = Some(Fallback {
                            kind: failure.kind,
                            http_status: failure.http_status,
                            attempts: failure.attempts,
                            discarded_chars: delivered,
                        });
                    }
                }
            } else {
                // Unreachable by construction (no endpoint => local), kept as a fail-closed guard.
                fallback = Some(Fallback {
                    kind: FailureKind::PolicyDenied,
                    http_status: None,
                    attempts: 0,
                    discarded_chars: 0,
                });
            }
        } else if decision.wanted_cloud_but_offline()
            && self.engine.policy().queue_when_offline
            && request.tools.is_none()
        {
            queued = self.try_enqueue(request);
        }

        let mut local_sink = |t: &str| sink.on_text(t);
        let (ans, tool_calls) = match &request.tools {
            None => (local.generate(request, &mut local_sink)?, Vec::new()),
            Some(tools) => {
                let output = StructuredRequest { constraint: OutputConstraint::Text, tools: Some(tools.clone()) };
                let s = local.generate_structured(request, &output, &mut local_sink)?;
                (s.answer, s.tool_calls)
            }
        };
        let attempts = fallback.as_ref().map_or(0, |f| f.attempts);
        let out = RoutedAnswer {
            text: ans.text,
            decision,
            served_by: Target::Local,
            fallback,
            queued,
            prompt_tokens: if ans.prompt_tokens > 0 { ans.prompt_tokens } else { prompt_tokens },
            completion_tokens: ans.completion_tokens,
            finish_reason: ans.finish_reason,
            tool_calls,
        };
        self.record(&out, attempts);
        Ok(out)
    }

    /// Sends queued requests to the cloud, if the endpoint is reachable now and the budgets
    /// allow; stores each answer in the queue (see [`OfflineQueue::answers`]). Safe to call
    /// repeatedly: a request answered once is never sent again.
    pub fn drain_queue(&self) -> Result<DrainReport> {
        let (Some(queue), Some(client)) = (&self.queue, &self.cloud) else {
            return Ok(DrainReport::default());
        };
        if queue.pending().is_empty() {
            return Ok(DrainReport { remaining: 0, ..DrainReport::default() });
        }
        if !self.engine.policy().cloud_enabled {
            return Err(crate::Error::PolicyDenied { reason: "cloud is disabled by the policy".into() });
        }
        match self.engine.probe_reachable(&client.config().base_url) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                return Err(crate::Error::CloudUnavailable { reason: "endpoint not reachable".into() });
            }
        }
        let mut gate = |q: &queue::QueuedRequest| {
            let tokens = (q.request.text_len() / 4) as u64;
            self.engine.reserve_budget(tokens)
        };
        queue.drain(client, self.transport.as_ref(), &self.audit, &mut gate)
    }

    fn try_enqueue(&self, request: &ChatRequest) -> Option<u64> {
        let q = self.queue.as_ref()?;
        match q.enqueue(request) {
            Ok(id) => {
                if let Err(e) = self.audit.record(&AuditEvent::queued(id)) {
                    log::warn!("router: audit write failed: {e}");
                }
                Some(id)
            }
            Err(e) => {
                log::warn!("router: could not queue the request for later: {e}");
                None
            }
        }
    }

    fn record(&self, answer: &RoutedAnswer, attempts: u32) {
        let est = self.engine.policy().estimate_cost_usd(answer.prompt_tokens, answer.completion_tokens);
        let ev = AuditEvent::route(answer, attempts, est);
        if let Err(e) = self.audit.record(&ev) {
            log::warn!("router: audit write failed: {e}");
        }
    }
}

/// Checks a cloud answer's tool calls against the request's tools: each names a tool the choice
/// offers and has arguments valid against its schema, and a `required` or named choice got at
/// least one call. Calls without tools in the request are invalid too.
fn check_cloud_calls(request: &ChatRequest, ans: &cloud::CloudAnswer) -> Result<()> {
    use crate::structured::tools::ToolChoice;
    let Some(tools) = &request.tools else {
        return match ans.tool_calls.is_empty() {
            true => Ok(()),
            false => {
                Err(crate::Error::InvalidToolCall { reason: "the cloud called a tool but none was offered".into() })
            }
        };
    };
    if ans.tool_calls.is_empty()
        && matches!(tools.choice, ToolChoice::Required | ToolChoice::Named(_))
        && ans.finish_reason == FinishReason::Stop
    {
        return Err(crate::Error::InvalidToolCall {
            reason: "the tool choice requires a call and the cloud answered text".into(),
        });
    }
    ans.tool_calls.iter().try_for_each(|c| tools.check_call(c))
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Private files: the audit log and the offline queue hold metadata about the user's requests
// (the queue holds request text and cloud answers), so they are the owner's alone.
// ---------------------------------------------------------------------------------------------

/// Creates `dir` and its missing parents; on Unix the ones it creates are owner-only (0700).
/// Directories that already exist are left as they are (the app's own data directory, or /tmp).
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    Ok(())
}

/// Opens `path` with `opts` as an owner-only file: created 0600 on Unix (an existing file with
/// wider permissions is narrowed to 0600), never through a symbolic link (`O_NOFOLLOW`: a link at
/// `path` is an [`crate::Error::Storage`], so nobody can point the log at a file of their choosing),
/// and only if it is a regular file. Creates the parent directory with [`create_private_dir`].
pub(crate) fn open_private(path: &std::path::Path, opts: &mut std::fs::OpenOptions) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = opts.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return crate::Error::Storage {
                reason: format!("{} is a symbolic link; refusing to follow it", path.display()),
            };
        }
        crate::Error::Io(e)
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(crate::Error::Storage { reason: format!("{} is not a regular file", path.display()) });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Router>();
        check::<queue::OfflineQueue>();
        check::<AuditLog>();
        check::<serve::Server>();
    }

    #[test]
    fn debug_never_prints_text() {
        let canary = "CANARY-7731 my secret plans";
        let req = ChatRequest::user(canary).with_system(canary).with_attachment(canary);
        let d = format!("{req:?} {:?}", req.messages[0]);
        assert!(!d.contains("CANARY"), "{d}");
        let ans = LocalAnswer {
            text: canary.into(),
            prompt_tokens: 1,
            completion_tokens: 1,
            finish_reason: FinishReason::Stop,
        };
        assert!(!format!("{ans:?}").contains("CANARY"));
    }

    /// A request's text is bounded as a whole: two parts under the limit each, over it together.
    #[test]
    fn oversized_requests_are_a_typed_error() {
        let half = "CANARY ".repeat(crate::MAX_INPUT_BYTES / 14 + 1);
        assert!(ChatRequest::user(half.clone()).validate().is_ok());
        let req = ChatRequest::user(half.clone()).with_attachment(half.clone());
        match req.validate() {
            Err(e @ crate::Error::InputTooLarge { .. }) => assert!(!e.to_string().contains("CANARY"), "{e}"),
            other => panic!("expected InputTooLarge, got {other:?}"),
        }
        let req = ChatRequest::user("hi").with_system(half.clone()).with_message(Role::Assistant, half);
        assert!(matches!(req.validate(), Err(crate::Error::InputTooLarge { .. })));
    }

    #[test]
    fn attachments_fold_into_last_user_message() {
        let req = ChatRequest::user("first")
            .with_message(Role::Assistant, "ok")
            .with_message(Role::User, "second")
            .with_attachment("doc one");
        let w = req.wire_messages();
        assert_eq!(w.len(), 3);
        assert_eq!(w[2].content, "second\n\n[Attachment 1]\ndoc one");
        assert_eq!(w[0].content, "first");
        let only_sys = ChatRequest {
            messages: vec![ChatMessage::new(Role::System, "s")],
            attachments: vec!["a".into()],
            ..Default::default()
        };
        let w = only_sys.wire_messages();
        assert_eq!(w.last().map(|m| m.role), Some(Role::User));
        assert_eq!(w.last().map(|m| m.content.as_str()), Some("[Attachment 1]\na"));
        assert_eq!(req.parts().count(), 4);
    }

    /// The router's directory (created by the audit log or the queue, whichever comes first)
    /// and its files are owner-only; they used to be 0755/0644.
    #[cfg(unix)]
    #[test]
    fn router_directory_and_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        let root = std::env::temp_dir().join(format!("edgewise-router-perm-{}-{}", std::process::id(), now_ms()));
        let dir = root.join("a").join("router");
        let router = Router::new(RouterConfig::local_only(&dir)).unwrap();
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("audit.jsonl")), 0o600);
        assert_eq!(mode(&dir.join("queue.wal")), 0o600);
        drop(router);
        let _ = std::fs::remove_dir_all(&root);
    }
}
