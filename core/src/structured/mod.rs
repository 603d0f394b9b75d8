//! Structured output: constrained decoding with [`llguidance`].
//!
//! A generation may carry an [`OutputConstraint`]: a JSON Schema, a regular expression or a
//! Lark grammar. At every step the constraint's token mask (the tokens that keep the output a
//! valid prefix) is applied to the logits before sampling, so only valid text can be produced,
//! whatever the model and the sampler settings.
//!
//! - The token trie and llguidance's `ParserFactory` are built from the model's tokenizer once
//!   per [`crate::engine::Engine`], on the first constrained request, and cached
//!   ([`ConstraintCompiler`]).
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

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokRxInfo, TokTrie, TokEnv};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};

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
            return Err(Error::InvalidConstraint { reason: format!("the {name} must be 1..={MAX_CONSTRAINT_BYTES} bytes") });
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
        let t0 = std::time::Instant::now();
        let words = token_words(tok, vocab)?;
        let eos = tok.eos_ids();
        let Some(&first_eos) = eos.iter().find(|&&e| (e as usize) < vocab) else {
            return Err(Error::Tokenizer { reason: "no end-of-generation token for constrained decoding".into() });
        };
        let eos: Vec<u32> = eos.into_iter().filter(|&e| (e as usize) < vocab).collect();
        let info = TokRxInfo { vocab_size: vocab as u32, tok_eos: first_eos, tok_bos: tok.bos_id(), tok_pad: None, tok_unk: None, tok_end_of_turn: None };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let digits = Arc::new((0..vocab as u32).map(|id| DigitRun::of(env.tok_trie().token(id))).collect::<Vec<_>>());
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| invalid("building the token trie", e))?;
        factory.quiet();
        // Verbose errors quote the tokens generated so far: never in our errors.
        factory.limits_mut().verbose_errors = false;
        log::debug!("structured: token trie for {vocab} tokens in {:.0?}", t0.elapsed());
        Ok(Self { factory, vocab, digits })
    }

    /// Compiles `c` and computes its first mask. `None` for [`OutputConstraint::Text`].
    pub fn compile(&self, c: &OutputConstraint) -> Result<Option<Constrained>> {
        c.validate()?;
        let t0 = std::time::Instant::now();
        let grammar = match c {
            OutputConstraint::Text => return Ok(None),
            OutputConstraint::JsonSchema(s) => {
                let mut schema: serde_json::Value = serde_json::from_str(s).map_err(|e| invalid("the JSON Schema is not JSON", e))?;
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
                if let Ok((g, _)) = init.to_internal(Some(self.factory.tok_env().clone()), self.factory.limits().clone()) {
                    if !start_is_productive(&g.to_string(None)) {
                        return Err(invalid(c.kind(), "the grammar accepts no output (its start rule derives no finite text)"));
                    }
                }
                grammar
            }
        };
        let parser = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.factory.create_parser(grammar))) {
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
        Ok(Some(Constrained { matcher, mask: Some(mask), json, vocab: self.vocab, digits: self.digits.clone(), run: 0 }))
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
            if !productive.contains(l.as_str()) && rhs.iter().all(|s| !nonterminals.contains(s.as_str()) || productive.contains(s.as_str())) {
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
pub struct Constrained {
    matcher: Matcher,
    /// The mask for the next token (computed ahead).
    mask: Option<SimpleVob>,
    json: bool,
    vocab: usize,
    digits: Arc<Vec<DigitRun>>,
    /// ASCII digits at the end of the output so far.
    run: usize,
}

impl std::fmt::Debug for Constrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constrained").field("json", &self.json).finish_non_exhaustive()
    }
}

impl Constrained {
    /// Sets every logit the constraint forbids at this step to `-∞`. Returns `false` when no
    /// token is allowed (the constraint is complete: nothing more may be generated).
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<bool> {
        let (json, run) = (self.json, self.run);
        let digits = self.digits.clone();
        let mask = self.current_mask()?;
        if mask.is_zero() {
            return Ok(false);
        }
        apply_mask(mask.as_slice(), logits);
        if json && run > 0 {
            cap_digit_run(&digits, run, logits);
        }
        Ok(true)
    }

    /// Computes the next step's mask now (so a thread can do it while the model runs the
    /// forward pass); [`Constrained::mask_logits`] then only applies it.
    pub fn prepare_mask(&mut self) -> Result<()> {
        self.current_mask().map(|_| ())
    }

    /// Whether `token` is allowed at this step.
    pub fn allows(&mut self, token: u32) -> Result<bool> {
        Ok((token as usize) < self.vocab && self.current_mask()?.is_allowed(token))
    }

    /// The smallest-id allowed token with the largest logit (after masking), if any: the
    /// fallback when a sampler rounding edge picked a forbidden token.
    pub fn best_allowed(&mut self, logits: &[f32]) -> Result<Option<u32>> {
        let mask = self.current_mask()?;
        let mut best: Option<(u32, f32)> = None;
        mask.iter_set_entries(|i| {
            let l = logits.get(i).copied().unwrap_or(f32::NEG_INFINITY);
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((i as u32, l));
            }
        });
        Ok(best.map(|b| b.0))
    }

    fn current_mask(&mut self) -> Result<&SimpleVob> {
        if self.mask.is_none() {
            let m = self.matcher.compute_mask().map_err(|e| invalid("constraint", e))?;
            self.mask = Some(m);
        }
        // Just set when it was missing.
        self.mask.as_ref().ok_or_else(|| invalid("constraint", "no mask"))
    }

    /// Advances the constraint past the sampled `token`.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        self.mask = None;
        let d = self.digits.get(token as usize).copied().unwrap_or_default();
        self.run = if d.all { self.run + d.lead as usize } else { d.trail as usize };
        self.matcher.consume_token(token).map_err(|e| invalid("constraint", e))
    }

    /// Whether nothing more can follow (the output is complete).
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Whether the output so far is a complete match (end-of-generation allowed here).
    pub fn is_accepting(&mut self) -> bool {
        if self.matcher.is_error() {
            return false;
        }
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether this is a JSON Schema constraint.
    pub fn is_json(&self) -> bool {
        self.json
    }
}

/// Forbids (sets to `-∞`) the allowed tokens that would make the run of `run` digits longer
/// than [`MAX_DIGIT_RUN`], unless that would leave nothing allowed.
fn cap_digit_run(digits: &[DigitRun], run: usize, logits: &mut [f32]) {
    let too_long = |i: usize| digits.get(i).is_some_and(|d| d.lead > 0 && run + d.lead as usize > MAX_DIGIT_RUN);
    let other_allowed = logits.iter().enumerate().any(|(i, &l)| l != f32::NEG_INFINITY && !too_long(i));
    if other_allowed {
        for (i, l) in logits.iter_mut().enumerate() {
            if too_long(i) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// `logits[i] = -∞` wherever bit `i` of `words` (LSB first) is clear, and past its end.
fn apply_mask(words: &[u32], logits: &mut [f32]) {
    for (&w, chunk) in words.iter().zip(logits.chunks_mut(32)) {
        match w {
            u32::MAX => {}
            0 => chunk.fill(f32::NEG_INFINITY),
            w => {
                for (b, x) in chunk.iter_mut().enumerate() {
                    if (w >> b) & 1 == 0 {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
    let covered = words.len() * 32;
    if logits.len() > covered {
        logits[covered..].fill(f32::NEG_INFINITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_bits_map_to_token_ids() {
        let mut l = vec![1.0f32; 70];
        apply_mask(&[0b101, u32::MAX], &mut l);
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
        let mut l = vec![1.0, 0.5, 0.2, 0.1];
        cap_digit_run(&digits, MAX_DIGIT_RUN - 1, &mut l);
        assert_eq!(l, vec![1.0, 0.5, f32::NEG_INFINITY, 0.1], "one more digit fits, two do not");
        let mut only_digits = vec![1.0, f32::NEG_INFINITY, 0.2, f32::NEG_INFINITY];
        cap_digit_run(&digits, MAX_DIGIT_RUN, &mut only_digits);
        assert_eq!(only_digits, vec![1.0, f32::NEG_INFINITY, 0.2, f32::NEG_INFINITY], "nothing else allowed: no cap");
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
