//! Incremental detokenization for streaming.
//!
//! Decoding one id at a time goes wrong in two ways: a character split across byte-fallback ids
//! (`<0xF0><0x9F><0x98><0x80>` = 😀) would come out as replacement characters, and decoders that
//! look at neighbours (SentencePiece's leading-space strip) would drop or add spaces. The approach
//! is the one of `tokenizers`' `DecodeStream` (and candle's `TokenOutputStream`): keep a short
//! window of ids, decode the window, and emit only the new suffix once it no longer ends in an
//! incomplete character. We drive `tokenizers::step_decode_stream` ourselves so the decoder can own
//! a handle to the tokenizer (no borrow), which the engine and the FFI layer need.
//!
//! Invariant (tested on the whole corpus): the concatenation of everything `push` and `finish`
//! return equals `Tokenizer::decode(all ids)`, and no piece ends inside a character.

use super::Tokenizer;
use crate::error::{Error, Result};

/// Streaming decoder: feed ids with [`push`](Self::push), flush with [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    tok: Tokenizer,
    skip_special: bool,
    /// The window of ids still needed to decode the next piece correctly.
    ids: Vec<u32>,
    /// The text the window's first `prefix_index` ids decode to (already emitted).
    prefix: String,
    prefix_index: usize,
}

impl StreamDecoder {
    pub(crate) fn new(tok: Tokenizer, skip_special: bool) -> Self {
        Self { tok, skip_special, ids: Vec::new(), prefix: String::new(), prefix_index: 0 }
    }

    /// A decoder that drops special tokens (BOS, turn markers) from the output.
    pub fn skipping_special(mut self) -> Self {
        self.skip_special = true;
        self
    }

    /// Add one id. Returns the new text, or `None` when the id does not complete a character yet
    /// (a partial UTF-8 sequence from byte-fallback ids) or adds no text.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.tok.check_ids(&[id])?;
        tokenizers::step_decode_stream(
            &**self.tok.hf(),
            vec![id],
            self.skip_special,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        )
        // The library's error message quotes decoded text: never pass it on.
        .map_err(|_| Error::Tokenizer { reason: "stream decoding lost synchronisation".into() })
    }

    /// Flush what is left at the end of generation: trailing bytes that never completed a
    /// character come out as U+FFFD, exactly as `decode` renders them. The decoder is reset.
    pub fn finish(&mut self) -> Result<Option<String>> {
        let ids = std::mem::take(&mut self.ids);
        let prefix = std::mem::take(&mut self.prefix);
        self.prefix_index = 0;
        if ids.is_empty() {
            return Ok(None);
        }
        let text = self.tok.decode(&ids, self.skip_special)?;
        match text.strip_prefix(prefix.as_str()) {
            Some("") => Ok(None),
            Some(rest) => Ok(Some(rest.to_string())),
            None => Err(Error::Tokenizer { reason: "stream decoding lost synchronisation".into() }),
        }
    }

    /// Forget any pending ids (e.g. after a cancelled generation).
    pub fn reset(&mut self) {
        self.ids.clear();
        self.prefix.clear();
        self.prefix_index = 0;
    }
}
