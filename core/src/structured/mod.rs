//! Structured output: constrained decoding with [`llguidance`].
//!
//! A generation may carry an [`OutputConstraint`]: a JSON Schema, a regular expression or a
//! Lark grammar. At every step the constraint's token mask (the tokens that keep the output a
//! valid prefix) is applied to the logits before sampling, so only valid text can be produced,
//! whatever the model and the sampler settings.
//!
//! - The token trie and llguidance's `ParserFactory` are built from the model's tokenizer once
//!   per [`crate::engine::Engine`], on the first constrained request (or ahead of it, off the
//!   request path, by [`crate::engine::Engine::prepare_constraints`]), shared by every session
//!   and request, and released by [`crate::engine::Engine::trim`] at `Low` ([`ConstraintCompiler`]).
//! - A constraint is compiled and its first mask computed before the prompt is prefilled: an
//!   invalid or unsupported schema, a bad regex or grammar, and a constraint that accepts no
//!   output at all are [`Error::InvalidConstraint`] before any token is generated.
//! - JSON Schemas produce compact JSON (no whitespace between tokens), which keeps small models
//!   from wandering into runs of blank lines; a schema's own `x-guidance` options win.
//! - Control tokens (`<start_of_turn>`, `<|im_end|>`) can never be produced as text; the model's
//!   end-of-generation tokens are allowed exactly where the constraint is complete.
//!
//! Privacy: errors carry llguidance's description of what is wrong with the constraint (the
//! schema or grammar, which the app wrote), never prompt or generated text (its verbose errors,
//! which quote the tokens so far, are off).

pub mod tools;
pub mod validate;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};

use crate::sampling::Sampler;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// What the generated text must look like.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum OutputConstraint {
    /// Free text (no constraint).
    #[default]
    Text,
    /// JSON that validates against this JSON Schema (a JSON document, as text). Supported:
    /// `type`, `properties`, `required`, `additionalProperties`, `items`, `prefixItems`,
    /// `minItems`/`maxItems`, `enum`, `const`, `anyOf`/`oneOf`/`allOf`, number bounds,
    /// `minLength`/`maxLength`, `pattern`, common `format`s and local `$ref`s; anything else is
    /// an error, never silently ignored.
    JsonSchema(String),
    /// Text matching this regular expression in full (Rust `regex` syntax).
    Regex(String),
    /// Text derived from this Lark grammar's `start` rule (llguidance's Lark dialect).
    Grammar(String),
}

impl OutputConstraint {
    /// Whether this is [`OutputConstraint::Text`].
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text)
    }

    /// Rejects sizes no app needs (the constraint itself is checked when it is compiled).
    pub fn validate(&self) -> Result<()> {
        let (name, body) = match self {
            Self::Text => return Ok(()),
            Self::JsonSchema(s) => ("json_schema", s),
            Self::Regex(s) => ("regex", s),
            Self::Grammar(s) => ("grammar", s),
        };
        if body.trim().is_empty() || body.len() > MAX_CONSTRAINT_BYTES {
            return Err(Error::InvalidConstraint {
                reason: format!("the {name} must be 1..={MAX_CONSTRAINT_BYTES} bytes"),
            });
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::JsonSchema(_) => "json_schema",
            Self::Regex(_) => "regex",
            Self::Grammar(_) => "grammar",
        }
    }
}

/// Largest schema, regex or grammar accepted (1 MiB).
pub const MAX_CONSTRAINT_BYTES: usize = 1 << 20;

/// Most characters of an llguidance error kept in [`Error::InvalidConstraint`].
const MAX_REASON_CHARS: usize = 400;

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    let mut reason = format!("{what}: {e}");
    if let Some((at, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(at);
        reason.push('…');
    }
    Error::InvalidConstraint { reason }
}

/// The per-model half of constrained decoding: the token trie and llguidance's parser factory
/// (built once, ~0.1–0.5 s for a 262k vocabulary), which compiles constraints.
pub struct ConstraintCompiler {
    factory: ParserFactory,
    vocab: usize,
    /// How long [`ConstraintCompiler::new`] took.
    build_ms: f64,
    /// Per token: ASCII digits at its start and at its end, and whether it is all digits.
    digits: Arc<Vec<DigitRun>>,
}

/// A token's digits, for the digit-run cap ([`MAX_DIGIT_RUN`]).
#[derive(Debug, Clone, Copy, Default)]
struct DigitRun {
    lead: u16,
    trail: u16,
    all: bool,
}

impl DigitRun {
    fn of(bytes: &[u8]) -> Self {
        let lead = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let trail = bytes.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let cap = |n: usize| n.min(u16::MAX as usize) as u16;
        Self { lead: cap(lead), trail: cap(trail), all: !bytes.is_empty() && lead == bytes.len() }
    }
}

/// llguidance's token-set slices (see [`ConstraintCompiler::with_slices`]): the tokens of 1–10
/// characters that may stand inside a JSON string. Inside an open string (any `maxLength` of
/// at least 10 left, or none) their mask is a precomputed set, and only the trie of the other
/// tokens is walked. llguidance's own JSON set (also whitespace, `{1,30}` and `+`) keeps
/// 123 MiB of filtered tries for Gemma 3's 262k vocabulary against 54 MiB for this one, for
/// the same mask time on the JSON-schema suite (234 vs 236 µs a token; no slice at all: 37 MiB
/// but 450 µs; `core/tests/structured_costs.rs`).
const SLICES: &[&str] = &[r#"[^"\\\x00-\x1F\x7F]{1,10}"#];

/// Longest run of ASCII digits a JSON output gets where the constraint allows something else:
/// a base model can repeat `0` after `1.` forever; llama.cpp's JSON grammars cap a number's
/// parts at 16 digits for the same reason. Where only digits are allowed (a `pattern` of 20
/// digits, a lower bound of 10^20) the run goes on.
pub const MAX_DIGIT_RUN: usize = 16;

impl std::fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintCompiler").field("vocab", &self.vocab).finish_non_exhaustive()
    }
}

impl ConstraintCompiler {
    /// Builds the token trie from `tok` for a model with `vocab` logits: every id's bytes
    /// (SentencePiece `▁` as a space and `<0xNN>` byte pieces as bytes, or GPT-2 byte-level
    /// characters as bytes), control tokens marked special so grammars never emit them as text.
    pub fn new(tok: &Tokenizer, vocab: usize) -> Result<Self> {
        let slices: Vec<String> = SLICES.iter().map(|s| s.to_string()).collect();
        Self::with_slices(tok, vocab, &slices)
    }

    /// [`ConstraintCompiler::new`] with llguidance's token-set `slices` (regexes whose tokens'
    /// mask is precomputed, each a filtered copy of the trie): the memory/speed trade-off
    /// measured by `core/tests/structured_costs.rs`.
    #[doc(hidden)]
    pub fn with_slices(tok: &Tokenizer, vocab: usize, slices: &[String]) -> Result<Self> {
        let t0 = std::time::Instant::now();
        let words = token_words(tok, vocab)?;
        let eos = tok.eos_ids();
        let Some(&first_eos) = eos.iter().find(|&&e| (e as usize) < vocab) else {
            return Err(Error::Tokenizer { reason: "no end-of-generation token for constrained decoding".into() });
        };
        let eos: Vec<u32> = eos.into_iter().filter(|&e| (e as usize) < vocab).collect();
        let info = TokRxInfo {
            vocab_size: vocab as u32,
            tok_eos: first_eos,
            tok_bos: tok.bos_id(),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        // The vocabulary as bytes now lives in the trie: not held while the slices are built.
        drop(words);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let digits = Arc::new((0..vocab as u32).map(|id| DigitRun::of(env.tok_trie().token(id))).collect::<Vec<_>>());
        let mut factory =
            ParserFactory::new(&env, Default::default(), slices).map_err(|e| invalid("building the token trie", e))?;
        factory.quiet();
        // Verbose errors quote the tokens generated so far: never in our errors.
        factory.limits_mut().verbose_errors = false;
        let build_ms = t0.elapsed().as_secs_f64() * 1e3;
        log::debug!("structured: token trie for {vocab} tokens in {build_ms:.0} ms");
        Ok(Self { factory, vocab, build_ms, digits })
    }

    /// How long building this compiler (the token trie and its slices) took, in milliseconds.
    pub fn build_ms(&self) -> f64 {
        self.build_ms
    }

    /// Compiles `c` and computes its first mask. `None` for [`OutputConstraint::Text`].
    pub fn compile(&self, c: &OutputConstraint) -> Result<Option<Constrained>> {
        c.validate()?;
        let t0 = std::time::Instant::now();
        let grammar = match c {
            OutputConstraint::Text => return Ok(None),
            OutputConstraint::JsonSchema(s) => {
                let mut schema: serde_json::Value =
                    serde_json::from_str(s).map_err(|e| invalid("the JSON Schema is not JSON", e))?;
                if let Some(obj) = schema.as_object_mut() {
                    // Compact JSON unless the schema asks otherwise.
                    obj.entry("x-guidance").or_insert_with(|| serde_json::json!({ "whitespace_flexible": false }));
                } else if !schema.is_boolean() {
                    return Err(invalid("json_schema", "a schema is an object or a boolean"));
                }
                TopLevelGrammar::from_json_schema(schema)
            }
            OutputConstraint::Regex(r) => {
                // Checked by `regex` first: llguidance's own errors for bad syntax are terser.
                regex::Regex::new(r).map_err(|e| invalid("regex", e))?;
                TopLevelGrammar::from_regex(r)
            }
            OutputConstraint::Grammar(g) => {
                let grammar = TopLevelGrammar::from_lark(g.clone());
                // llguidance compiles a grammar whose start rule derives no finite text (`a: "x" a`)
                // and would emit its prefixes forever: refuse it here.
                let init = llguidance::api::GrammarInit::Serialized(grammar.clone());
                if let Ok((g, _)) =
                    init.to_internal(Some(self.factory.tok_env().clone()), self.factory.limits().clone())
                {
                    if !start_is_productive(&g.to_string(None)) {
                        return Err(invalid(
                            c.kind(),
                            "the grammar accepts no output (its start rule derives no finite text)",
                        ));
                    }
                }
                grammar
            }
        };
        let parser =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.factory.create_parser(grammar))) {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Err(invalid(c.kind(), e)),
                Err(_) => return Err(invalid(c.kind(), "the constraint compiler panicked")),
            };
        let mut matcher = Matcher::new(Ok(parser));
        let mask = matcher.compute_mask().map_err(|e| invalid(c.kind(), e))?;
        if mask.is_zero() {
            return Err(invalid(c.kind(), "the constraint accepts no output"));
        }
        log::debug!("structured: {} compiled, first mask in {:.1?}", c.kind(), t0.elapsed());
        let json = matches!(c, OutputConstraint::JsonSchema(_));
        Ok(Some(Constrained {
            matcher: Arc::new(std::sync::Mutex::new(matcher)),
            mask: Some(mask),
            worker: None,
            pending: false,
            json,
            vocab: self.vocab,
            digits: self.digits.clone(),
            run: 0,
        }))
    }
}

/// Whether the start symbol of llguidance's compiled grammar (its `Grammar::to_string` listing:
/// one `lhs ⇦ rhs…` line per rule, continuation rules with an empty lhs, lexemes as `[n]`)
/// derives some finite text. The usual fixpoint: a symbol is productive once one of its rules
/// has only productive symbols; lexemes and symbols without rules (nested grammars) count as
/// productive, and rule conditions are ignored, so the answer errs towards "productive".
fn start_is_productive(listing: &str) -> bool {
    let mut rules: Vec<(String, Vec<String>)> = Vec::new();
    let mut lhs = String::new();
    for line in listing.lines() {
        let Some((l, r)) = line.split_once(" ⇦ ") else { continue };
        let l = l.trim();
        if !l.is_empty() {
            lhs = l.trim_end_matches("::_").to_string();
        }
        let rhs = r
            .split_whitespace()
            .take_while(|t| !(t.starts_with("%if") || t.contains('=') || *t == "CAPTURE"))
            .filter(|t| *t != "ϵ")
            .map(|t| t.split("::").next().unwrap_or(t).to_string())
            .collect();
        rules.push((lhs.clone(), rhs));
    }
    let Some(start) = rules.first().map(|r| r.0.clone()) else { return true };
    let nonterminals: std::collections::HashSet<&str> = rules.iter().map(|r| r.0.as_str()).collect();
    let mut productive: std::collections::HashSet<&str> = std::collections::HashSet::new();
    loop {
        let before = productive.len();
        for (l, rhs) in &rules {
            if !productive.contains(l.as_str())
                && rhs.iter().all(|s| !nonterminals.contains(s.as_str()) || productive.contains(s.as_str()))
            {
                productive.insert(l.as_str());
            }
        }
        if productive.len() == before {
            break;
        }
    }
    productive.contains(start.as_str())
}

/// The bytes of every id below `vocab`: what llguidance matches the constraint against.
fn token_words(tok: &Tokenizer, vocab: usize) -> Result<Vec<Vec<u8>>> {
    let hf = tok.hf();
    let decoder = serde_json::to_value(hf.get_decoder()).unwrap_or(serde_json::Value::Null);
    let byte_level = decoder["type"] == "ByteLevel";
    let mut space = None;
    if let Some(list) = decoder["decoders"].as_array() {
        for d in list {
            if d["type"] == "Replace" && d["content"] == " " {
                space = d["pattern"]["String"].as_str().and_then(|s| {
                    let mut c = s.chars();
                    c.next().filter(|_| c.next().is_none())
                });
            }
        }
    }
    let space = space.unwrap_or('\u{2581}');
    let byte_of = byte_level_table();
    let control: std::collections::HashSet<u32> = tok.control_ids().iter().copied().collect();
    let mut words = vec![Vec::new(); vocab];
    let added = hf.get_added_tokens_decoder();
    for (piece, id) in hf.get_vocab(false) {
        let Some(w) = words.get_mut(id as usize) else { continue };
        if control.contains(&id) || added.contains_key(&id) {
            continue;
        }
        *w = if byte_level {
            // Characters outside the byte table cannot come out of this tokenizer: drop the id.
            piece.chars().map(|c| byte_of.get(&c).copied()).collect::<Option<Vec<u8>>>().unwrap_or_default()
        } else if let Some(b) = byte_piece(&piece) {
            vec![b]
        } else {
            piece.replace(space, " ").into_bytes()
        };
    }
    for (id, t) in added {
        let Some(w) = words.get_mut(id as usize) else { continue };
        *w = if control.contains(&id) || t.special {
            let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
            b.extend_from_slice(t.content.as_bytes());
            b
        } else {
            t.content.replace(space, " ").into_bytes()
        };
    }
    if words.iter().all(|w| w.is_empty()) {
        return Err(Error::Tokenizer { reason: "the vocabulary has no text tokens".into() });
    }
    Ok(words)
}

/// `<0x0A>` → 0x0A (SentencePiece byte-fallback pieces).
fn byte_piece(p: &str) -> Option<u8> {
    let hex = p.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok()).flatten()
}

/// GPT-2's byte ↔ printable character table, inverted.
fn byte_level_table() -> std::collections::HashMap<char, u8> {
    let mut out = std::collections::HashMap::with_capacity(256);
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        let c = b as char;
        let printable = matches!(c, '!'..='~' | '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{FF}');
        let ch = if printable {
            c
        } else {
            let ch = char::from_u32(next).unwrap_or(c);
            next += 1;
            ch
        };
        out.insert(ch, b);
    }
    out
}

/// One generation's constraint state: the matcher and the mask of the current step.
///
/// The next step's mask depends only on the tokens so far, not on the logits, so it is computed
/// on a worker thread (one per generation, started on the first [`Constrained::start_mask`])
/// while the model runs the forward pass; [`Constrained::sample`] waits for it.
pub struct Constrained {
    matcher: Arc<std::sync::Mutex<Matcher>>,
    /// The mask for the next token (computed ahead).
    mask: Option<SimpleVob>,
    /// The worker, and whether it is computing the mask now.
    worker: Option<MaskWorker>,
    pending: bool,
    json: bool,
    vocab: usize,
    digits: Arc<Vec<DigitRun>>,
    /// ASCII digits at the end of the output so far.
    run: usize,
}

/// The thread that computes a [`Constrained`]'s masks: one request in, one mask out.
struct MaskWorker {
    go: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Receiver<std::result::Result<SimpleVob, String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MaskWorker {
    fn spawn(matcher: Arc<std::sync::Mutex<Matcher>>) -> Option<Self> {
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("edgewise-mask".into())
            .spawn(move || {
                while go_rx.recv().is_ok() {
                    let mask = match matcher.lock() {
                        Ok(mut m) => m.compute_mask().map_err(|e| e.to_string()),
                        Err(_) => Err("the constraint's state is poisoned".to_string()),
                    };
                    if done_tx.send(mask).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| log::warn!("structured: no mask thread ({e}); masks are computed in line"))
            .ok()?;
        Some(Self { go, done, thread: Some(thread) })
    }
}

impl Drop for MaskWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the mask it may be computing.
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.go, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Constrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constrained").field("json", &self.json).finish_non_exhaustive()
    }
}

impl Constrained {
    /// Picks the next token with `sampler` from `logits` (masked in place) under this step's
    /// mask; `None` when no token is allowed (the constraint is complete: nothing more may be
    /// generated). Plain greedy reads only the chunks of logits that hold an allowed token
    /// ([`crate::sampling`]'s `greedy_masked`, bit for bit what masking everything gives);
    /// other settings mask every forbidden logit to `-∞` and sample as usual.
    pub fn sample(&mut self, sampler: &mut Sampler, logits: &mut [f32], history: &[u32]) -> Result<Option<(u32, f32)>> {
        let (json, run, vocab) = (self.json, self.run, self.vocab);
        let digits = self.digits.clone();
        let mask = self.current_mask()?;
        if mask.is_zero() {
            return Ok(None);
        }
        let capped = if json && run > 0 { cap_digit_run(&digits, run, mask.as_slice()) } else { None };
        let words = capped.as_deref().unwrap_or(mask.as_slice());
        if sampler.is_plain_greedy() {
            if let Some(pick) = crate::sampling::greedy_masked(logits, words)? {
                return Ok(Some(pick));
            }
        }
        crate::sampling::apply_mask(words, logits);
        let (mut t, lp) = sampler.sample(logits, history)?;
        if (t as usize) >= vocab || !mask.is_allowed(t) {
            // A rounding edge of the draw: the allowed token with the largest logit instead.
            let mut best: Option<(u32, f32)> = None;
            mask.iter_set_entries(|i| {
                let l = logits.get(i).copied().unwrap_or(f32::NEG_INFINITY);
                if best.is_none_or(|(_, b)| l > b) {
                    best = Some((i as u32, l));
                }
            });
            t = best.map_or(t, |b| b.0);
        }
        Ok(Some((t, lp)))
    }

    /// This step's allowed tokens as mask words (bit `i % 32` of word `i / 32`, LSB first; the
    /// digit-run cap applied), for a pick made where the logits are (a GPU's device-side
    /// greedy, [`crate::model::CausalLm::forward_greedy_masked`]); waits for the mask. `None`
    /// when no token is allowed: the caller takes the logits to [`Constrained::sample`], which
    /// ends the output.
    pub fn greedy_words(&mut self) -> Result<Option<Vec<u32>>> {
        let (json, run) = (self.json, self.run);
        let digits = self.digits.clone();
        let mask = self.current_mask()?;
        if mask.is_zero() {
            return Ok(None);
        }
        let capped = if json && run > 0 { cap_digit_run(&digits, run, mask.as_slice()) } else { None };
        Ok(Some(capped.unwrap_or_else(|| mask.as_slice().to_vec())))
    }

    /// Starts computing the next step's mask on the worker thread (the caller then runs the
    /// forward pass); [`Constrained::sample`] waits for it. A no-op when it is known or coming.
    pub fn start_mask(&mut self) {
        if self.mask.is_some() || self.pending {
            return;
        }
        if self.worker.is_none() {
            self.worker = MaskWorker::spawn(self.matcher.clone());
        }
        self.pending = self.worker.as_ref().is_some_and(|w| w.go.send(()).is_ok());
    }

    /// Computes the next step's mask now, on this thread, unless it is known or coming.
    pub fn prepare_mask(&mut self) -> Result<()> {
        self.current_mask().map(|_| ())
    }

    fn current_mask(&mut self) -> Result<&SimpleVob> {
        if self.mask.is_none() {
            let m = if std::mem::take(&mut self.pending) {
                match self.worker.as_ref().map(|w| w.done.recv()) {
                    Some(Ok(m)) => m.map_err(|e| invalid("constraint", e))?,
                    _ => return Err(invalid("constraint", "the constraint's mask computation panicked")),
                }
            } else {
                self.lock()?.compute_mask().map_err(|e| invalid("constraint", e))?
            };
            self.mask = Some(m);
        }
        // Just set when it was missing.
        self.mask.as_ref().ok_or_else(|| invalid("constraint", "no mask"))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Matcher>> {
        self.matcher.lock().map_err(|_| invalid("constraint", "the constraint's mask computation panicked"))
    }

    /// Advances the constraint past the sampled `token`.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        if self.pending {
            // Not expected (a step samples before it commits): the mask in flight is the old one.
            self.current_mask()?;
        }
        self.mask = None;
        let d = self.digits.get(token as usize).copied().unwrap_or_default();
        self.run = if d.all { self.run + d.lead as usize } else { d.trail as usize };
        // llguidance's error here quotes the token's text: never in our errors (privacy).
        self.lock()?
            .consume_token(token)
            .map_err(|_| invalid("constraint", "the sampled token does not satisfy the constraint"))
    }

    /// Whether nothing more can follow (the output is complete).
    pub fn is_stopped(&self) -> bool {
        self.lock().map_or(true, |m| m.is_stopped())
    }

    /// Whether the output so far is a complete match (end-of-generation allowed here).
    pub fn is_accepting(&mut self) -> bool {
        let Ok(mut m) = self.lock() else { return false };
        if m.is_error() {
            return false;
        }
        m.is_stopped() || m.is_accepting().unwrap_or(false)
    }

    /// Whether this is a JSON Schema constraint.
    pub fn is_json(&self) -> bool {
        self.json
    }
}

/// The step's mask (`words`) without the tokens that would make the run of `run` digits longer
/// than [`MAX_DIGIT_RUN`]; `None` when there are none, or when nothing else is allowed (then
/// the run goes on). Only the allowed tokens are visited, not the vocabulary.
fn cap_digit_run(digits: &[DigitRun], run: usize, words: &[u32]) -> Option<Vec<u32>> {
    let too_long = |i: usize| digits.get(i).is_some_and(|d| d.lead > 0 && run + d.lead as usize > MAX_DIGIT_RUN);
    let mut long = Vec::new();
    let mut other_allowed = false;
    for_each_set(words, |i| {
        if too_long(i) {
            long.push(i);
        } else {
            other_allowed = true;
        }
    });
    if long.is_empty() || !other_allowed {
        return None;
    }
    let mut out = words.to_vec();
    for i in long {
        out[i / 32] &= !(1u32 << (i % 32));
    }
    Some(out)
}

/// Calls `f` with the index of every set bit of `words` (LSB first), in increasing order.
fn for_each_set(words: &[u32], mut f: impl FnMut(usize)) {
    for (w, &bits) in words.iter().enumerate() {
        let mut b = bits;
        while b != 0 {
            f(w * 32 + b.trailing_zeros() as usize);
            b &= b - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_bits_map_to_token_ids() {
        let mut l = vec![1.0f32; 70];
        crate::sampling::apply_mask(&[0b101, u32::MAX], &mut l);
        assert_eq!(&l[..3], &[1.0, f32::NEG_INFINITY, 1.0]);
        assert!(l[3..32].iter().all(|x| *x == f32::NEG_INFINITY));
        assert!(l[32..64].iter().all(|x| *x == 1.0));
        assert!(l[64..].iter().all(|x| *x == f32::NEG_INFINITY), "ids past the mask are forbidden");
    }

    #[test]
    fn byte_pieces_and_byte_level_table() {
        assert_eq!(byte_piece("<0x0A>"), Some(10));
        assert_eq!(byte_piece("<0xZZ>"), None);
        assert_eq!(byte_piece("<0x0A0>"), None);
        let t = byte_level_table();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'a'], b'a');
        assert_eq!(t[&'\u{120}'], b' ');
        assert_eq!(t[&'\u{10A}'], b'\n');
    }

    #[test]
    fn digit_runs_are_capped_only_where_something_else_is_allowed() {
        let digits = vec![DigitRun::of(b"0"), DigitRun::of(b"}"), DigitRun::of(b"12"), DigitRun::of(b"a1")];
        assert!(digits[0].all && digits[2].all && !digits[3].all && digits[3].trail == 1);
        assert_eq!(
            cap_digit_run(&digits, MAX_DIGIT_RUN - 1, &[0b1111]),
            Some(vec![0b1011]),
            "one more digit fits, two do not"
        );
        assert_eq!(cap_digit_run(&digits, MAX_DIGIT_RUN - 2, &[0b1111]), None, "both fit");
        assert_eq!(cap_digit_run(&digits, MAX_DIGIT_RUN, &[0b0101]), None, "nothing else allowed: no cap");
        let mut far = vec![0u32; 3];
        far[2] = 1 << 5;
        far[0] = 0b10;
        let mut digits = vec![DigitRun::of(b"x"); 70];
        digits[69] = DigitRun::of(b"7");
        assert_eq!(cap_digit_run(&digits, MAX_DIGIT_RUN, &far), Some(vec![0b10, 0, 0]), "ids past the first word");
    }

    #[test]
    fn grammar_productivity_from_the_listing() {
        let ok = "Grammar:\nstart           ⇦ a  \na               ⇦ [3] a  \n                ⇦ [3]  \nstats: x\n";
        let looping = "Grammar:\nstart           ⇦ a  \na               ⇦ [3] a  \nstats: x\n";
        let eps = "Grammar:\nstart           ⇦ b::_   %if x   max_tokens=3\nb::_            ⇦ ϵ  \n";
        assert!(start_is_productive(ok));
        assert!(!start_is_productive(looping));
        assert!(start_is_productive(eps));
    }

    #[test]
    fn oversized_or_empty_constraints_are_rejected() {
        assert!(OutputConstraint::Text.validate().is_ok());
        assert!(matches!(OutputConstraint::Regex(String::new()).validate(), Err(Error::InvalidConstraint { .. })));
        let big = OutputConstraint::Grammar("x".repeat(MAX_CONSTRAINT_BYTES + 1));
        assert!(matches!(big.validate(), Err(Error::InvalidConstraint { .. })));
    }
}
