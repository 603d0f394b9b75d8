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
}

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
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| invalid("building the token trie", e))?;
        factory.quiet();
        // Verbose errors quote the tokens generated so far: never in our errors.
        factory.limits_mut().verbose_errors = false;
        log::debug!("structured: token trie for {vocab} tokens in {:.0?}", t0.elapsed());
        Ok(Self { factory, vocab })
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
            OutputConstraint::Grammar(g) => TopLevelGrammar::from_lark(g.clone()),
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
        Ok(Some(Constrained { matcher, mask: Some(mask), json, vocab: self.vocab }))
    }
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
        let mask = self.current_mask()?;
        if mask.is_zero() {
            return Ok(false);
        }
        apply_mask(mask.as_slice(), logits);
        Ok(true)
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
    fn oversized_or_empty_constraints_are_rejected() {
        assert!(OutputConstraint::Text.validate().is_ok());
        assert!(matches!(OutputConstraint::Regex(String::new()).validate(), Err(Error::InvalidConstraint { .. })));
        let big = OutputConstraint::Grammar("x".repeat(MAX_CONSTRAINT_BYTES + 1));
        assert!(matches!(big.validate(), Err(Error::InvalidConstraint { .. })));
    }
}
