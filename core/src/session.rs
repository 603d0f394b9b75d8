//! Sessions: prompt → prefill → decode loop → stop conditions, with streaming and cancel.
//!
//! ```no_run
//! # use edgewise_core::{engine::{Engine, EngineConfig}, session::{GenerationParams, SessionConfig}};
//! let engine = Engine::load("gemma-3-270m-q4_k_m.gguf", EngineConfig::default())?;
//! let mut s = engine.new_session(SessionConfig::default())?;
//! let cancel = s.cancel_handle(); // cancel.cancel() from any thread stops the loop
//! let out = s.chat("Name three rivers.", &GenerationParams::default(), &mut |piece: &str| {
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::kv_cache::KvCache;
use crate::model::{StepLogits, TopLogits};
use crate::sampling::{Sampler, SamplingParams};
use crate::structured::tools::{ToolCall, ToolResult, Tools};
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
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { max_context: 2048, prefill_chunk: 256, system_prompt: None, overflow: OverflowPolicy::Error }
    }
}

impl SessionConfig {
    /// Rejects absurd values.
    pub fn validate(&self, model_max: usize) -> Result<()> {
        if self.max_context < 16 || self.max_context > model_max {
            return Err(Error::InvalidParameter { name: "max_context", reason: format!("must be in 16..={model_max}") });
        }
        if self.prefill_chunk == 0 || self.prefill_chunk > 4096 {
            return Err(Error::InvalidParameter { name: "prefill_chunk", reason: "must be in 1..=4096".into() });
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
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self { sampling: SamplingParams::default(), max_tokens: 256, stop: Vec::new(), ignore_eos: false, constraint: OutputConstraint::Text }
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

/// Cancels a running generation from any thread.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Requests cancellation; the decode loop stops before its next token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A conversation with its own KV cache.
pub struct Session {
    engine: Engine,
    cfg: SessionConfig,
    cache: KvCache,
    /// Exactly the tokens held by `cache`.
    cached: Vec<u32>,
    history: Vec<ChatMessage>,
    cancel: CancelHandle,
    /// Tools offered in chats, and how many chat turns used them (call ids).
    tools: Option<Tools>,
    tool_turns: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("cfg", &self.cfg).field("cached_tokens", &self.cached.len()).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(engine: Engine, cfg: SessionConfig) -> Result<Self> {
        cfg.validate(engine.model().max_context())?;
        let cache = engine.model().new_cache(cfg.max_context, cfg.prefill_chunk)?;
        log::debug!("session: context {}, kv cache {} KiB", cfg.max_context, cache.size_bytes() >> 10);
        Ok(Self { engine, cfg, cache, cached: Vec::new(), history: Vec::new(), cancel: CancelHandle::default(), tools: None, tool_turns: 0 })
    }

    /// A handle that cancels this session's running generation.
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

    /// Forgets the conversation and the cache.
    pub fn reset(&mut self) {
        self.history.clear();
        self.cached.clear();
        self.cache.reset();
    }

    /// Offers `tools` in the following chat turns (`None` removes them). The tools are described
    /// in the system prompt (the built-in format of [`crate::structured::tools`]); a chat answer
    /// is then text or calls, constrained by the tool choice, and [`Generation::tool_calls`]
    /// holds the calls. Changing the tools changes the prompt's start, so the next turn prefills
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

    /// Sends tool results back as the next turn and streams the model's answer (text, or more
    /// calls). The cached conversation is reused: only the results are prefilled.
    pub fn send_tool_results(&mut self, results: &[ToolResult], params: &GenerationParams, sink: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        if results.is_empty() {
            return Err(Error::InvalidParameter { name: "tool_results", reason: "at least one result".into() });
        }
        self.chat(&Tools::result_turn(results), params, sink)
    }

    /// Raw completion of `prompt` (no chat template; BOS added as the model adds it). The
    /// conversation history is not used or changed; the cache is reused where it matches.
    pub fn complete(&mut self, prompt: &str, params: &GenerationParams, sink: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        let tok = self.engine.tokenizer();
        let ids = tok.encode(prompt, tok.add_bos_default())?;
        self.generate_from(ids, params, sink)
    }

    /// Sends a user message and streams the model's answer; both join the history.
    pub fn chat(&mut self, message: &str, params: &GenerationParams, sink: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        params.validate()?;
        let mut turns = self.history.clone();
        turns.push(ChatMessage { role: Role::User, content: message.to_string() });
        let ids = loop {
            let ids = self.render(&turns)?;
            let need = ids.len() + 1;
            if need <= self.cfg.max_context {
                break ids;
            }
            // Drop the oldest user/assistant pair, if allowed and possible.
            if self.cfg.overflow == OverflowPolicy::DropOldestTurns && turns.len() > 1 {
                let n = if turns.len() >= 3 { 2 } else { 1 };
                turns.drain(..n);
                continue;
            }
            return Err(Error::ContextOverflow { max: self.cfg.max_context, requested: need });
        };
        // The tool choice constrains the answer unless the caller set a constraint.
        let tool_constraint = self.tools.as_ref().filter(|_| params.constraint.is_text()).map(Tools::constraint);
        let mut g = match tool_constraint {
            Some(constraint) => self.generate_from(ids, &GenerationParams { constraint, ..params.clone() }, sink)?,
            None => self.generate_from(ids, params, sink)?,
        };
        if let Some(t) = &self.tools {
            if g.valid != Some(false) {
                g.tool_calls = t.parse_calls(&g.text, self.tool_turns);
            }
            self.tool_turns += 1;
        }
        turns.push(ChatMessage { role: Role::Assistant, content: g.text.clone() });
        self.history = turns;
        Ok(g)
    }

    fn render(&self, turns: &[ChatMessage]) -> Result<Vec<u32>> {
        let mut msgs = Vec::with_capacity(turns.len() + 1);
        let tool_block = self.tools.as_ref().map(Tools::system_block).unwrap_or_default();
        let system = match (&self.cfg.system_prompt, tool_block.is_empty()) {
            (Some(sys), true) => Some(sys.clone()),
            (Some(sys), false) => Some(format!("{sys}\n\n{tool_block}")),
            (None, false) => Some(tool_block),
            (None, true) => None,
        };
        if let Some(sys) = system {
            msgs.push(ChatMessage { role: Role::System, content: sys });
        }
        msgs.extend_from_slice(turns);
        // One BOS, template text parsed for control tokens, message text encoded as typed (a user
        // who types `<end_of_turn>` cannot forge a turn boundary).
        self.engine.template().encode(self.engine.tokenizer(), &msgs, true)
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

    /// Generates a continuation of `prompt` token ids (the core loop).
    pub fn generate_from(&mut self, prompt: Vec<u32>, params: &GenerationParams, sink: &mut dyn FnMut(&str) -> bool) -> Result<Generation> {
        params.validate()?;
        let t0 = Instant::now();
        self.cancel.clear();
        if prompt.is_empty() {
            return Err(Error::InvalidParameter { name: "prompt", reason: "no tokens".into() });
        }
        if prompt.len() + 1 > self.cfg.max_context {
            return Err(Error::ContextOverflow { max: self.cfg.max_context, requested: prompt.len() + 1 });
        }
        let model = self.engine.model();
        // Reuse the cached prefix; at least one token must be fed to get logits.
        let mut common = self.cached.iter().zip(&prompt).take_while(|(a, b)| a == b).count();
        common = common.min(prompt.len() - 1);
        if !self.cache.truncate(common) {
            common = 0;
        }
        self.cached.truncate(common);
        let mut sampler = Sampler::new(params.sampling.clone())?;
        // Compiled (and its first mask computed) before any work: a bad constraint costs nothing.
        let mut constraint = match &params.constraint {
            OutputConstraint::Text => None,
            c => self.engine.constraint_compiler()?.compile(c)?,
        };
        // A constraint masks the logits on the host: every step reads them all back.
        let host_logits = constraint.is_some();
        let top_needed = |sampler: &Sampler, history: &[u32]| if host_logits { None } else { sampler.candidates_needed(history, model.vocab_size()) };
        // Greedy without a penalty needs only the maximum: the model may pick on its device.
        let device_pick = sampler.is_plain_greedy() && !host_logits;
        // Otherwise, where the sampler's settings allow it, only the `top` largest logits.
        let step = |tokens: &[u32], cache: &mut KvCache, top: Option<usize>| -> Result<Next> {
            Ok(match top {
                _ if device_pick => Next::Picked(model.forward_greedy(tokens, cache)?),
                Some(k) => match model.forward_top_k(tokens, cache, k)? {
                    StepLogits::Top(t) => Next::Top(t),
                    StepLogits::All(l) => Next::Logits(l),
                },
                None => Next::Logits(model.forward(tokens, cache)?),
            })
        };
        let mut next_out = Next::Logits(Vec::new());
        for chunk in prompt[common..].chunks(self.cfg.prefill_chunk) {
            if self.cancel.is_cancelled() {
                return Ok(self.finish_cancelled(&prompt, common, t0, constraint.is_some()));
            }
            next_out = step(chunk, &mut self.cache, top_needed(&sampler, &prompt))?;
            self.cached.extend_from_slice(chunk);
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
            if self.cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            let (next, lp) = match &mut next_out {
                Next::Picked(p) => *p,
                Next::Logits(logits) => match constraint.as_mut() {
                    None => sampler.sample(logits, &history)?,
                    Some(c) => {
                        if !c.mask_logits(logits)? {
                            // Nothing may follow: the output is complete.
                            break StopReason::Eos;
                        }
                        let (mut t, lp) = sampler.sample(logits, &history)?;
                        if !c.allows(t)? {
                            // A rounding edge of the draw; take the best allowed token instead.
                            t = c.best_allowed(logits)?.unwrap_or(t);
                        }
                        (t, lp)
                    }
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
            next_out = step(&[next], &mut self.cache, top_needed(&sampler, &history))?;
            self.cached.push(next);
        };
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
                let json = if complete && c.is_json() { serde_json::from_str::<serde_json::Value>(&text).ok() } else { None };
                (Some(complete && (json.is_some() || !c.is_json())), json)
            }
        };
        Ok(Generation { text, token_ids: generated, stop_reason: reason, mean_logprob, metrics, valid, json, tool_calls: Vec::new() })
    }

    fn finish_cancelled(&self, prompt: &[u32], common: usize, t0: Instant, constrained: bool) -> Generation {
        let total = t0.elapsed().as_secs_f64() * 1e3;
        Generation {
            text: String::new(),
            token_ids: Vec::new(),
            stop_reason: StopReason::Cancelled,
            mean_logprob: 0.0,
            metrics: Metrics { prompt_tokens: prompt.len(), prefilled_tokens: self.cached.len().saturating_sub(common), total_ms: total, ..Default::default() },
            valid: constrained.then_some(false),
            json: None,
            tool_calls: Vec::new(),
        }
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

    /// On wgpu (lavapipe here), seeded sampled generations with top-k give the same tokens when
    /// the device selects the candidates as when every step reads all the logits back.
    #[test]
    fn device_top_k_sampling_matches_the_full_read_back() {
        use crate::backend::BackendPreference;
        use crate::engine::EngineConfig;
        use crate::model::StepLogits;
        use crate::sampling::FORCE_HOST_SAMPLING;
        let Some(path) = crate::catalog::test_model_path() else { return };
        if let Err(e) = crate::backend::gpu() {
            eprintln!("SKIPPED: no wgpu device ({e})");
            return;
        }
        let cfg = EngineConfig { backend: BackendPreference::Gpu, threads: Some(2), gpu_self_test: false };
        let engine = Engine::load(path, cfg).unwrap();
        // The device path is really taken (or the comparison below would prove nothing).
        let ids = engine.tokenizer().encode("Once upon a time", true).unwrap();
        let mut cache = engine.model().new_cache(64, 16).unwrap();
        assert!(matches!(engine.model().forward_top_k(&ids, &mut cache, 40).unwrap(), StepLogits::Top(_)));
        for (sampling, n) in [
            (SamplingParams { temperature: 0.9, top_k: 40, seed: 7, ..Default::default() }, 10),
            (SamplingParams { temperature: 1.5, top_k: 64, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.3, seed: 11, ..Default::default() }, 10),
            (SamplingParams { repetition_penalty: 1.5, ..SamplingParams::greedy() }, 6),
        ] {
            let params = GenerationParams { sampling, max_tokens: n, ignore_eos: true, ..Default::default() };
            let run = |host: bool| {
                FORCE_HOST_SAMPLING.with(|f| f.set(host));
                let mut s = engine.new_session(SessionConfig { max_context: 128, ..Default::default() }).unwrap();
                let g = s.complete("Once upon a time", &params, &mut |_| true);
                FORCE_HOST_SAMPLING.with(|f| f.set(false));
                g.unwrap()
            };
            let (device, host) = (run(false), run(true));
            assert_eq!(device.token_ids, host.token_ids, "{:?}", params.sampling);
            assert!((device.mean_logprob - host.mean_logprob).abs() < 1e-3, "{} vs {}", device.mean_logprob, host.mean_logprob);
        }
    }

    #[test]
    fn params_validation() {
        assert!(GenerationParams { max_tokens: 0, ..Default::default() }.validate().is_err());
        assert!(GenerationParams { stop: vec![String::new()], ..Default::default() }.validate().is_err());
        assert!(SessionConfig { max_context: 1, ..Default::default() }.validate(32768).is_err());
        assert!(SessionConfig { max_context: 1 << 20, ..Default::default() }.validate(32768).is_err());
    }
}
