//! Training examples from JSON Lines: `{"messages": [{"role", "content"}, …]}` (the last message
//! is the assistant's answer) or `{"prompt": …, "completion": …}` (one user turn and its answer).
//! Each is rendered with the model's chat template; the loss covers the tokens after the prompt
//! (the answer and the template's end-of-turn), never the prompt.

use std::io::BufRead;
use std::path::Path;

use crate::tokenizer::chat_template::{ChatMessage, ChatTemplate, Role};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// One tokenized example: the loss covers `tokens[answer_start..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Prompt and answer tokens.
    pub tokens: Vec<u32>,
    /// Index of the first answer token (`1..tokens.len()`).
    pub answer_start: usize,
}

impl Example {
    /// Tokens the loss covers.
    pub fn answer_tokens(&self) -> usize {
        self.tokens.len() - self.answer_start
    }
}

/// A data file read: the examples kept and how many were too long.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// The examples that fit.
    pub examples: Vec<Example>,
    /// Examples longer than the length limit (skipped).
    pub skipped_too_long: usize,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    completion: Option<String>,
}

fn line_err(line: usize, what: impl std::fmt::Display) -> Error {
    Error::Training { reason: format!("training data line {line}: {what}") }
}

/// The conversation of one JSON line (`line` is 1-based, for messages).
pub fn parse_line(text: &str, line: usize) -> Result<Vec<ChatMessage>> {
    // serde's messages can quote the input: only its category and position are reported.
    let l: Line = serde_json::from_str(text).map_err(|e| {
        line_err(line, format!("not a valid example ({:?} error at column {})", e.classify(), e.column()))
    })?;
    let msgs = match (l.messages, l.prompt, l.completion) {
        (Some(m), None, None) => m,
        (None, Some(p), Some(c)) => vec![ChatMessage::new(Role::User, p), ChatMessage::new(Role::Assistant, c)],
        _ => return Err(line_err(line, "expected either `messages` or both `prompt` and `completion`")),
    };
    match msgs.last() {
        Some(m) if m.role == Role::Assistant && !m.content.trim().is_empty() => {}
        _ => return Err(line_err(line, "the last message must be a non-empty assistant answer")),
    }
    if msgs.len() < 2 {
        return Err(line_err(line, "an example needs a prompt before the answer"));
    }
    Ok(msgs)
}

/// Tokenizes one conversation: the prompt is everything before the last (assistant) message with
/// the generation prompt; the answer is what the full rendering adds after it.
pub fn tokenize(msgs: &[ChatMessage], tok: &Tokenizer, template: &ChatTemplate, line: usize) -> Result<Example> {
    let prompt = template.encode(tok, &msgs[..msgs.len() - 1], true).map_err(|e| line_err(line, e))?;
    let full = template.encode(tok, msgs, false).map_err(|e| line_err(line, e))?;
    if prompt.is_empty() || full.len() <= prompt.len() || !full.starts_with(&prompt) {
        return Err(line_err(line, "the chat template does not render the answer after the prompt"));
    }
    Ok(Example { answer_start: prompt.len(), tokens: full })
}

/// Reads a JSON Lines file (blank lines are skipped). Examples over `max_len` tokens are
/// skipped and counted; a malformed line is an error naming its line number.
pub fn load(path: &Path, tok: &Tokenizer, template: &ChatTemplate, max_len: usize) -> Result<Dataset> {
    let f = std::fs::File::open(path)?;
    let mut ds = Dataset::default();
    for (i, l) in std::io::BufReader::new(f).lines().enumerate() {
        let l = l.map_err(|e| line_err(i + 1, format!("unreadable ({})", e.kind())))?;
        if l.trim().is_empty() {
            continue;
        }
        crate::check_input_len(l.len()).map_err(|_| line_err(i + 1, "line over the 1 MiB limit"))?;
        let msgs = parse_line(&l, i + 1)?;
        let ex = tokenize(&msgs, tok, template, i + 1)?;
        if ex.tokens.len() > max_len {
            ds.skipped_too_long += 1;
            continue;
        }
        ds.examples.push(ex);
    }
    if ds.skipped_too_long > 0 {
        log::warn!("{}: {} examples over {max_len} tokens skipped", path.display(), ds.skipped_too_long);
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<Vec<ChatMessage>>) -> String {
        match r {
            Err(Error::Training { reason }) => reason,
            other => panic!("expected Error::Training, got {other:?}"),
        }
    }

    #[test]
    fn both_formats_parse() {
        let a = parse_line(r#"{"prompt":"p","completion":"c"}"#, 1).unwrap();
        assert_eq!(a, vec![ChatMessage::new(Role::User, "p"), ChatMessage::new(Role::Assistant, "c")]);
        let b = parse_line(r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"p"},{"role":"assistant","content":"c"}]}"#, 1).unwrap();
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn malformed_lines_name_the_line_and_not_the_text() {
        let r = reason(parse_line(r#"{"prompt":"SECRET-CANARY","completion":5}"#, 7));
        assert!(r.contains("line 7"), "{r}");
        assert!(!r.contains("SECRET-CANARY"), "{r}");
        let r = reason(parse_line("not json SECRET-CANARY", 3));
        assert!(r.contains("line 3") && !r.contains("SECRET-CANARY"), "{r}");
        let r = reason(parse_line(r#"{"messages":[{"role":"user","content":"SECRET-CANARY"}]}"#, 9));
        assert!(r.contains("line 9") && r.contains("assistant") && !r.contains("SECRET-CANARY"), "{r}");
        assert!(reason(parse_line(r#"{"prompt":"p"}"#, 2)).contains("line 2"));
    }
}
