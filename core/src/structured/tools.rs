//! Tool calling: tools the app defines (name, description, JSON Schema of the arguments), a
//! prompt format that shows them to the model, and a constraint that makes every call the model
//! starts name a known tool with arguments valid against its schema.
//!
//! # The built-in format (Gemma 3, and any template without tool support)
//!
//! The tools are described in a block added to the system prompt ([`Tools::system_block`]). A
//! tool call is an answer that is one JSON object, nothing else:
//!
//! ```text
//! {"tool_calls":[{"name":"add_to_cart","arguments":{"item":"apple","qty":2}}]}
//! ```
//!
//! (1 to [`MAX_CALLS_PER_TURN`] calls). Any other answer is text. [`ToolChoice`] picks the
//! constraint: `auto` lets the model answer text (an answer that does not start with `{`) or
//! calls, constrained from the first `{`; `required` forces calls; a named tool forces calls of
//! that tool; `none` removes the tools from the prompt and leaves the answer free.
//!
//! Results go back as a user turn ([`Tools::result_turn`]):
//!
//! ```text
//! <tool_result id="call_1_0" name="add_to_cart">
//! {"ok":true}
//! </tool_result>
//! ```
//!
//! so the conversation stays user/model alternating (Gemma's template requires it) and the
//! session's cache holds the whole exchange: the next turn prefills only the results.
//!
//! # The model's own format (Qwen 2.5 / Qwen 3 / Qwen 3.5, Llama 3.x)
//!
//! A chat template that takes `tools` ([`ToolFormat::detect`]) shows the tools itself (the
//! template is rendered with `tools` = [`Tools::template_tools`]; no block is added), and the
//! calls are constrained to the family's format, byte for byte what its template prints for a
//! call (Python `json.dumps` spacing):
//!
//! - [`ToolFormat::Hermes`] (Qwen): `<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>`,
//!   1 to [`MAX_CALLS_PER_TURN`] of them separated by `\n`; results are `tool` messages (the
//!   template wraps them in `<tool_response>`). Under `auto`, text is any answer that does not
//!   start with `<to`. A model that thinks (Qwen 3: its template handles `<think>`) may open
//!   any answer, under every choice, with a `<think>…</think>` block of free text (anything but
//!   `</think>`, at most half the answer's `max_tokens`); after it a call is constrained as
//!   without thinking, and `required` or a named tool force it ([`Tools::constraint_for_model`],
//!   [`Thinking`]). With thinking off (`enable_thinking = false`) the answer may not think.
//! - [`ToolFormat::QwenXml`] (Qwen 3.5, Qwen3-Coder-style templates):
//!   `<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>`,
//!   1 to [`MAX_CALLS_PER_TURN`] joined by `\n`; a string value is raw text (no
//!   `</parameter>` in it), any other value JSON as the template's `tojson` prints it
//!   (`Tools::xml_call_rules`); thinking and `auto` as for Hermes; results are `tool`
//!   messages (`<tool_response>`).
//! - [`ToolFormat::Llama3`]: one call `{"name": "f", "parameters": {"a": 1}}` per answer (the
//!   template allows one); results are `tool` messages (printed as the `ipython` role).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::OutputConstraint;
use crate::{Error, Result};

/// Most tools in one request.
pub const MAX_TOOLS: usize = 64;
/// Most calls in one answer.
pub const MAX_CALLS_PER_TURN: usize = 4;

/// Where a model that thinks stands when its answer starts, for the tool-call constraint
/// ([`Tools::constraint_for_model`]) and the parsing of its calls ([`Tools::parse_calls_thinking`]).
/// [`Thinking::at_prompt_end`] reads it off the end of the rendered prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Thinking {
    /// The template does not think (no `</think>` in it): nothing about thinking is constrained.
    #[default]
    No,
    /// The template thinks but thinking is off (`enable_thinking = false`: the prompt ends with
    /// the template's empty `<think>\n\n</think>` block): the answer may not open one.
    Off,
    /// The answer may open with `<think>`, text of at most `budget` tokens without `</think>`,
    /// then `</think>` (Qwen 3).
    May {
        /// Most tokens of thinking text; `</think>` is forced once they are spent.
        budget: usize,
    },
    /// The prompt ends inside an open `<think>` (Qwen 3.5, thinking-only templates): the answer
    /// starts in the thinking, which ends with `</think>` within `budget` tokens.
    Open {
        /// Most tokens of thinking text; `</think>` is forced once they are spent.
        budget: usize,
    },
}

impl Thinking {
    /// The thinking state of an answer to a prompt ending with `prompt_tail` (its last few
    /// tokens, decoded), from a model whose template `thinks`
    /// ([`crate::tokenizer::ChatTemplate::thinks`]), with at most `max_tokens` to answer: the
    /// thinking may take half of them, so a call still fits after it. A prompt that ends with
    /// `<think>` (and whitespace) is [`Thinking::Open`]; one that ends with `</think>` (the empty
    /// block a template prints when thinking is off) is [`Thinking::Off`].
    pub fn at_prompt_end(thinks: bool, prompt_tail: &str, max_tokens: usize) -> Self {
        let budget = (max_tokens / 2).max(1);
        let tail = prompt_tail.trim_end();
        if !thinks {
            Self::No
        } else if tail.ends_with("</think>") {
            Self::Off
        } else if tail.ends_with("<think>") {
            Self::Open { budget }
        } else {
            Self::May { budget }
        }
    }

    /// Splits an answer written in this state into its thinking (the text between `<think>`
    /// and the first `</think>`; `None` when it did not think) and the rest (after `</think>`
    /// and its whitespace). The grammar keeps `</think>` out of the thinking text, so the first
    /// one ends it: a `</think>` inside a later call's arguments stays in the call.
    pub fn split<'a>(&self, text: &'a str) -> (Option<&'a str>, &'a str) {
        let inner = match self {
            Self::May { .. } => text.strip_prefix("<think>"),
            Self::Open { .. } => Some(text),
            Self::No | Self::Off => None,
        };
        match inner.and_then(|t| t.split_once("</think>")) {
            Some((thinking, rest)) => (Some(thinking), rest.trim_start_matches([' ', '\t', '\r', '\n'])),
            None => (None, text),
        }
    }
}

/// The thinking rules of [`Tools::constraint_for_model`]: `think` is `<think>`, then
/// `think_rest`: text that does not contain `</think>`, then `</think>`, then at most 4
/// whitespace characters, the thinking within `budget` tokens. The text may hold `<` (even
/// `</think` or `<tool_call>`). Two lexemes race over it: THINK_CLOSED (the text with its
/// `</think>`: a regex that ends with `</think>` and holds no earlier one, so it ends right
/// there) and THINK_OPEN (the text alone, non-empty, which never ends by itself: any byte either
/// extends it or completes `</think>`, which kills it). A lexeme for the text followed by a
/// `"</think>"` one cannot work: the greedy lexer would run the text over `</think` and then
/// fail on `>`. llguidance's `max_tokens` cuts a lexeme wherever it stands (it ends, accepting
/// or not), so THINK_CLOSED stops one token before THINK_OPEN: a close the model writes within
/// `budget - 1` tokens ends the thinking; past that only THINK_OPEN goes on, and its cut at
/// `budget` is followed by the grammar's own `</think>` (were THINK_CLOSED cut last, the
/// answer would go on without `</think>`).
fn think_rules(budget: usize) -> String {
    let open = budget.max(2);
    let closed = open - 1;
    format!(
        "think: \"<think>\" think_rest\n\
         think_rest: (think_closed | think_open \"</think>\") WS?\n\
         think_closed[max_tokens={closed}]: THINK_CLOSED\n\
         think_open[max_tokens={open}]: THINK_OPEN\n\
         THINK_CLOSED: /(?s:.*)<\\/think>/ & ~/(?s:.*)<\\/think>(?s:.+)/\n\
         THINK_OPEN: ~/(?s:.*)<\\/think>(?s:.*)/ & /(?s:.+)/\n\
         WS: /[ \\t\\r\\n]{{1,4}}/\n"
    )
}

/// A function the app offers the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `[A-Za-z0-9_-]{1,64}`, unique in a request.
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments (an object schema; `{}` or absent = no arguments).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// How a chat template shows tools, calls and results ([`ToolFormat::detect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFormat {
    /// Edgewise's own format (Gemma 3, and any template without tool support).
    #[default]
    Builtin,
    /// Qwen 2.5 / Qwen 3 (Hermes style): `<tool_call>` blocks, `tool` results.
    Hermes,
    /// Qwen 3.5 (and Qwen3-Coder): `<tool_call>` blocks holding XML `<function=NAME>` with one
    /// `<parameter=ARG>` per argument, `tool` results.
    QwenXml,
    /// Llama 3.x: one JSON call with `parameters`, results in the `ipython` role.
    Llama3,
}

impl ToolFormat {
    /// The format a chat template's source handles: it must take `tools` and print calls as
    /// `<tool_call>` holding `<function=` / `<parameter=` (Qwen 3.5, checked first: its template
    /// also names `tool_call.arguments`), `<tool_call>` holding JSON (Qwen 2.5/3) or JSON with
    /// `"parameters"` beside an `ipython` role (Llama 3.1/3.2); anything else is
    /// [`ToolFormat::Builtin`].
    pub fn detect(template_source: &str) -> Self {
        let takes_tools = template_source.contains("tools");
        let has = |m: &str| template_source.contains(m);
        if takes_tools && has("<tool_call>") && has("<function=") && has("<parameter=") {
            Self::QwenXml
        } else if takes_tools && has("<tool_call>") && has("tool_call.arguments") {
            Self::Hermes
        } else if takes_tools && template_source.contains("ipython") && template_source.contains("\"parameters\"") {
            Self::Llama3
        } else {
            Self::Builtin
        }
    }
}

/// Which answers are allowed when tools are offered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// Text or tool calls, as the model decides.
    #[default]
    Auto,
    /// One or more tool calls.
    Required,
    /// No tool calls (the tools are not shown).
    None,
    /// Calls of this tool only.
    Named(String),
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Unique in the session (`call_<turn>_<index>`); echo it in the result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Arguments, valid against the tool's schema.
    pub arguments: Value,
}

/// What a tool returned, for the next turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The call's id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The result (any text; JSON is usual).
    pub content: String,
}

/// Tools plus the choice, as attached to a session ([`crate::session::Session::set_tools`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tools {
    /// The tools.
    pub tools: Vec<Tool>,
    /// Which answers are allowed.
    #[serde(default)]
    pub choice: ToolChoice,
}

impl Tools {
    /// Tools with [`ToolChoice::Auto`].
    pub fn new(tools: Vec<Tool>) -> Self {
        Self { tools, choice: ToolChoice::Auto }
    }

    /// Reads a tool list: a JSON array of `{name, description, parameters}` or of OpenAI's
    /// `{"type": "function", "function": {...}}`.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("the tool list is not JSON: {e}")))?;
        let Some(items) = v.as_array() else { return Err(bad("the tool list must be a JSON array".into())) };
        let tools = items
            .iter()
            .map(|t| {
                let f = if t.get("type").and_then(Value::as_str) == Some("function") { &t["function"] } else { t };
                serde_json::from_value::<Tool>(f.clone()).map_err(|e| bad(format!("a tool definition is invalid: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let t = Self::new(tools);
        t.validate()?;
        Ok(t)
    }

    /// Checks names, sizes, the choice, and that each schema is an object schema.
    pub fn validate(&self) -> Result<()> {
        if self.tools.is_empty() || self.tools.len() > MAX_TOOLS {
            return Err(bad(format!("1..={MAX_TOOLS} tools")));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tools {
            let ok = (1..=64).contains(&t.name.len())
                && t.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(bad("tool names are 1..=64 of [A-Za-z0-9_-]".into()));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(bad(format!("tool `{}` is defined twice", t.name)));
            }
            if !t.parameters.is_object() {
                return Err(bad(format!("the parameters of tool `{}` must be a JSON Schema object", t.name)));
            }
            if let Some(ty) = t.parameters.get("type") {
                if ty != "object" {
                    return Err(bad(format!("the parameters of tool `{}` must describe an object", t.name)));
                }
            }
        }
        if let ToolChoice::Named(n) = &self.choice {
            if !self.tools.iter().any(|t| &t.name == n) {
                return Err(bad(format!("tool_choice names `{n}`, which is not a tool")));
            }
        }
        Ok(())
    }

    /// The system-prompt block that describes the tools and the call format (empty for
    /// [`ToolChoice::None`]). Built-in format; a chat template that takes `tools` itself (Qwen,
    /// Llama 3) would render them instead — the hook is where this block is added
    /// ([`crate::session::Session`]'s `render`, [`crate::router::LocalEngine`]'s structured call).
    pub fn system_block(&self) -> String {
        if self.choice == ToolChoice::None {
            return String::new();
        }
        let mut s = String::from(
            "You can call tools. To call tools, answer with only a JSON object of this form and nothing else:\n\
             {\"tool_calls\":[{\"name\":\"<tool name>\",\"arguments\":{<arguments>}}]}\n\
             Tool results come back in <tool_result> blocks. Otherwise answer in plain text.\n\nTools:\n",
        );
        // Every tool, whatever the choice (the constraint narrows a named choice): the prompt
        // then stays the same across choices and the cached conversation is reused.
        for t in &self.tools {
            s.push_str(&format!(
                "- {}: {}\n  arguments (JSON Schema): {}\n",
                t.name,
                t.description.trim(),
                t.parameters
            ));
        }
        s
    }

    /// The tools as a chat template takes them (transformers' `tools`: OpenAI's
    /// `{"type": "function", "function": {name, description, parameters}}`); `None` under
    /// [`ToolChoice::None`] (the tools are not shown).
    pub fn template_tools(&self) -> Option<Value> {
        if self.choice == ToolChoice::None {
            return None;
        }
        let list: Vec<Value> = self
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        Some(Value::Array(list))
    }

    /// The JSON Schema of one call in a family format: `name`, then `args` (`arguments` or
    /// `parameters`), with Python's `json.dumps` spacing, as the family's template prints a call.
    fn family_call_schema(&self, args: &str) -> Value {
        let one: Vec<Value> = self
            .offered()
            .map(|t| {
                let mut props = serde_json::Map::new();
                props.insert("name".into(), json!({ "const": t.name }));
                props.insert(args.into(), t.parameters.clone());
                json!({ "type": "object", "properties": props, "required": ["name", args], "additionalProperties": false })
            })
            .collect();
        json!({ "anyOf": one, "x-guidance": { "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " } })
    }

    /// The output constraint for the answer in `format`, from a model that does not think.
    pub fn constraint_for(&self, format: ToolFormat) -> OutputConstraint {
        self.constraint_for_model(format, Thinking::No)
    }

    /// [`Tools::constraint_for`] for a model in `thinking` state ([`Thinking::at_prompt_end`]).
    /// In the Hermes format (Qwen 3) and the XML one (Qwen 3.5), under every choice:
    /// [`Thinking::May`] lets the answer open with a thinking block (`<think>`, text without
    /// `</think>` of at most `budget` tokens — `<` is fine —, `</think>`, forced once the budget
    /// is spent, up to 4 whitespace characters); [`Thinking::Open`] starts the answer in that text (the prompt opened the
    /// block); [`Thinking::Off`] forbids it (an answer may not open with `<th`). After the
    /// thinking, `auto` allows text or calls (or nothing), `required` and a named tool force the
    /// call, constrained from its first byte as without thinking.
    pub fn constraint_for_model(&self, format: ToolFormat, thinking: Thinking) -> OutputConstraint {
        match (format, &self.choice) {
            (ToolFormat::Builtin, _) | (_, ToolChoice::None) => self.constraint(),
            (ToolFormat::Hermes | ToolFormat::QwenXml, choice) => {
                let call = if format == ToolFormat::QwenXml {
                    self.xml_call_rules()
                } else {
                    format!(
                        "call: \"<tool_call>\\n\" obj \"\\n</tool_call>\"\nobj: %json {}\n",
                        self.family_call_schema("arguments")
                    )
                };
                let more = "(\"\\n\" call)?".repeat(MAX_CALLS_PER_TURN - 1);
                let auto = *choice == ToolChoice::Auto;
                // Text may not open with `<to` (a call's start), nor with `<th` where the model
                // thinks (`<think>` is the thinking's alone, and is refused when it is off).
                // Beside thinking, text may not hold `</think>` either: a lexeme that could
                // (`.*`) lets llguidance drop the thinking's `max_tokens` (seen on 1.9.1).
                let text = match thinking {
                    Thinking::No => "TEXT: /([^<\\s]|<[^t]|<t[^o])(?s:.*)/\n",
                    Thinking::Off => "TEXT: /([^<\\s]|<[^t]|<t[^oh])(?s:.*)/\n",
                    Thinking::May { .. } | Thinking::Open { .. } => {
                        "TEXT: /([^<\\s]|<[^t]|<t[^oh])(?s:.*)/ & ~/(?s:.*)<\\/think>(?s:.*)/\n"
                    }
                };
                let start = match (auto, thinking) {
                    (true, Thinking::No | Thinking::Off) => format!("start: TEXT | calls\n{text}"),
                    (true, Thinking::May { budget }) => {
                        format!("start: think (TEXT | calls)? | TEXT | calls\n{text}{}", think_rules(budget))
                    }
                    (true, Thinking::Open { budget }) => {
                        format!("start: think_rest (TEXT | calls)?\n{text}{}", think_rules(budget))
                    }
                    // `required` and a named tool: the answer is the call, after any thinking.
                    (false, Thinking::No | Thinking::Off) => "start: calls\n".to_string(),
                    (false, Thinking::May { budget }) => format!("start: think? calls\n{}", think_rules(budget)),
                    (false, Thinking::Open { budget }) => format!("start: think_rest calls\n{}", think_rules(budget)),
                };
                OutputConstraint::Grammar(format!("{start}calls: call {more}\n{call}"))
            }
            (ToolFormat::Llama3, ToolChoice::Auto) => OutputConstraint::Grammar(format!(
                "start: TEXT | call\ncall: %json {}\nTEXT: /[^{{\\s](?s:.*)/\n",
                self.family_call_schema("parameters")
            )),
            (ToolFormat::Llama3, _) => OutputConstraint::JsonSchema(self.family_call_schema("parameters").to_string()),
        }
    }

    /// The calls in an answer written in `format` (ids `call_<turn>_<index>`); empty for text.
    /// An answer from a model that thinks: [`Tools::parse_calls_thinking`].
    pub fn parse_calls_for(&self, format: ToolFormat, text: &str, turn: usize) -> Vec<ToolCall> {
        self.parse_calls_thinking(format, Thinking::No, text, turn)
    }

    /// The calls in an answer written in `format` by a model in `thinking` state (ids
    /// `call_<turn>_<index>`), read after its thinking ([`Thinking::split`]); empty for text.
    pub fn parse_calls_thinking(
        &self,
        format: ToolFormat,
        thinking: Thinking,
        text: &str,
        turn: usize,
    ) -> Vec<ToolCall> {
        let (_, text) = thinking.split(text);
        let known = |name: &str| self.tools.iter().any(|t| t.name == name);
        let mk = |i: usize, v: &Value, args: &str| -> Option<ToolCall> {
            let name = v.get("name")?.as_str()?;
            known(name).then(|| ToolCall {
                id: format!("call_{turn}_{i}"),
                name: name.to_string(),
                arguments: match v.get(args) {
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!({})),
                    Some(a) => a.clone(),
                    None => json!({}),
                },
            })
        };
        match format {
            ToolFormat::Builtin => self.parse_calls(text, turn),
            ToolFormat::QwenXml => {
                // Calls are read only where the answer starts with one (as Hermes), in order.
                let mut calls = Vec::new();
                let mut rest = text;
                while rest.starts_with("<tool_call>") && calls.len() < MAX_CALLS_PER_TURN {
                    let Some((call, after)) = self.parse_xml_call(rest, turn, calls.len()) else { break };
                    calls.push(call);
                    rest = after.strip_prefix('\n').unwrap_or(after);
                }
                calls
            }
            ToolFormat::Hermes => {
                // Each `<tool_call>…</tool_call>` block holds one call. Calls are constrained only
                // where the answer (after its thinking) starts with one; a `<tool_call>` later in
                // free text is text, never a call with unchecked arguments.
                if !text.starts_with("<tool_call>") {
                    return Vec::new();
                }
                let mut calls = Vec::new();
                for block in text.split("<tool_call>").skip(1) {
                    let Some((json, _)) = block.split_once("</tool_call>") else { continue };
                    if let Ok(v) = serde_json::from_str::<Value>(json.trim()) {
                        if let Some(c) = mk(calls.len(), &v, "arguments") {
                            calls.push(c);
                        }
                    }
                }
                calls.truncate(MAX_CALLS_PER_TURN);
                calls
            }
            ToolFormat::Llama3 => {
                let t = text.trim();
                let t = t.strip_prefix("<|python_tag|>").unwrap_or(t);
                match serde_json::from_str::<Value>(t) {
                    Ok(v) => mk(0, &v, "parameters").or_else(|| mk(0, &v, "arguments")).into_iter().collect(),
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// The answer text a model writes for `calls` in `format` (what the constraint produces and
    /// what the family's template prints for an assistant message with these `tool_calls`): for
    /// an OpenAI client that sends its calls back.
    pub fn call_text(format: ToolFormat, calls: &[(String, Value)]) -> String {
        match format {
            ToolFormat::Builtin => {
                let wire: Vec<String> = calls
                    .iter()
                    .map(|(n, a)| format!("{{\"name\":{},\"arguments\":{a}}}", Value::from(n.as_str())))
                    .collect();
                format!("{{\"tool_calls\":[{}]}}", wire.join(","))
            }
            ToolFormat::Hermes => calls
                .iter()
                .map(|(n, a)| {
                    format!(
                        "<tool_call>\n{{\"name\": {}, \"arguments\": {}}}\n</tool_call>",
                        py_json(&Value::from(n.as_str())),
                        py_json(a)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            ToolFormat::Llama3 => calls
                .iter()
                .map(|(n, a)| {
                    format!("{{\"name\": {}, \"parameters\": {}}}", py_json(&Value::from(n.as_str())), py_json(a))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            // As Qwen 3.5's template prints `tool_calls`: each argument in its own block, a
            // string as it is, a mapping or a list as `tojson`, anything else as Python's `str`
            // (`True`, `None`, `2.0`).
            ToolFormat::QwenXml => calls
                .iter()
                .map(|(n, a)| {
                    let mut s = format!("<tool_call>\n<function={n}>\n");
                    for (k, v) in a.as_object().into_iter().flatten() {
                        s.push_str(&format!("<parameter={k}>\n{}\n</parameter>\n", xml_value_text(v)));
                    }
                    s.push_str("</function>\n</tool_call>");
                    s
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// One call in the Qwen 3.5 XML form at the start of `text`
    /// (`<tool_call>\n<function=NAME>\n`, then `<parameter=ARG>\nVALUE\n</parameter>\n` per
    /// argument, then `</function>\n</tool_call>`) and the text after it; `None` where it is not
    /// one, names a tool that is not offered or an argument twice. A value is a string where
    /// the argument's schema takes only strings ([`xml_value_kind`]), also `None` (null) where
    /// it takes strings or null; else Python's `True`/`False`/`None` or JSON (text that is
    /// neither stays a string, for the validator to judge).
    fn parse_xml_call<'a>(&self, text: &'a str, turn: usize, index: usize) -> Option<(ToolCall, &'a str)> {
        let rest = text.strip_prefix("<tool_call>\n<function=")?;
        let (name, mut rest) = rest.split_once(">\n")?;
        let tool = self.tools.iter().find(|t| t.name == name)?;
        let mut args = serde_json::Map::new();
        loop {
            if let Some(after) = rest.strip_prefix("</function>\n</tool_call>") {
                let call = ToolCall {
                    id: format!("call_{turn}_{index}"),
                    name: name.to_string(),
                    arguments: Value::Object(args),
                };
                return Some((call, after));
            }
            let (arg, after) = rest.strip_prefix("<parameter=")?.split_once(">\n")?;
            let (raw, after) = after.split_once("\n</parameter>\n")?;
            let schema = tool.parameters.get("properties").and_then(|p| p.get(arg)).unwrap_or(&Value::Null);
            let value = match xml_value_kind(schema) {
                XmlValue::Raw => Value::String(raw.to_string()),
                XmlValue::RawOrNone(_) if raw == "None" => Value::Null,
                XmlValue::RawOrNone(_) => Value::String(raw.to_string()),
                XmlValue::Python(_) | XmlValue::Json => match raw {
                    "True" => Value::Bool(true),
                    "False" => Value::Bool(false),
                    "None" => Value::Null,
                    _ => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())),
                },
            };
            if args.insert(arg.to_string(), value).is_some() {
                return None;
            }
            rest = after;
        }
    }

    /// The Lark rules of one call in the Qwen 3.5 XML form (`call`), for
    /// [`Tools::constraint_for_model`]: a tool the choice offers; its parameters in any order
    /// (up to [`MAX_ANY_ORDER_PARAMS`] of them; a tool with more takes them in the schema's
    /// order), each at most once, the required ones present, no other; each value valid against
    /// its property's schema. A value whose schema takes only strings ([`xml_value_kind`]) is
    /// raw text (enum/const literals, `pattern`, `minLength`/`maxLength`; `format` is not
    /// enforced) that cannot contain `</parameter>`: one lexeme runs through its closing
    /// `\n</parameter>` and ends there (a text lexeme followed by a `"\n</parameter>"` one would
    /// run over `\n</parameter` and fail on `>`). A schema without any constraint takes any such
    /// text. Strings or null (`anyOf`/`oneOf` of string schemas and `{"type": "null"}`, or
    /// `type: ["string", "null"]`) are the same raw text or `None` (a string that is exactly
    /// `None` is then not allowed: the text reads back unambiguously). A boolean is Python's
    /// `True`/`False` and a null `None`, as the template's `| string` prints them; every other
    /// value is JSON (`%json` of its schema, Python's spacing, as the template's `tojson`
    /// prints a mapping or list).
    fn xml_call_rules(&self) -> String {
        let mut rules = String::new();
        let mut fns = Vec::new();
        for (i, t) in self.offered().enumerate() {
            fns.push(format!("f{i}"));
            let required: Vec<&str> = t
                .parameters
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let open_fn = lark_str(&format!("<function={}>\n", t.name));
            let props = t.parameters.get("properties").and_then(Value::as_object);
            // (rule, required) per parameter, in the schema's order.
            let mut params: Vec<(String, bool)> = Vec::new();
            for (j, (arg, schema)) in props.into_iter().flatten().enumerate() {
                let r = format!("f{i}_p{j}");
                let open = lark_str(&format!("<parameter={arg}>\n"));
                let close = "\"\\n</parameter>\\n\"";
                match xml_value_kind(schema) {
                    kind @ (XmlValue::Raw | XmlValue::RawOrNone(_)) => {
                        let term = format!("F{i}_P{j}");
                        let re = match kind {
                            XmlValue::RawOrNone(branches) => {
                                let one = if branches.len() == 1 {
                                    branches[0].clone()
                                } else {
                                    json!({ "anyOf": branches })
                                };
                                raw_value_regex(&one, true)
                            }
                            _ => raw_value_regex(schema, false),
                        };
                        rules.push_str(&format!("{r}: {open} {term} \"\\n\"\n{term}: {re}\n"));
                    }
                    XmlValue::Python(lits) => {
                        let alts: Vec<String> = lits.iter().map(|l| lark_str(l)).collect();
                        rules.push_str(&format!("{r}: {open} ({}) {close}\n", alts.join(" | ")));
                    }
                    XmlValue::Json => {
                        let mut s = schema.clone();
                        if let Value::Object(m) = &mut s {
                            // A `$ref` into the tool's definitions resolves inside the value's schema.
                            for key in ["$defs", "definitions"] {
                                if let Some(d) = t.parameters.get(key) {
                                    m.entry(key).or_insert_with(|| d.clone());
                                }
                            }
                            m.insert(
                                "x-guidance".into(),
                                json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " }),
                            );
                        }
                        rules.push_str(&format!("{r}: {open} {r}_v {close}\n{r}_v: %json {s}\n"));
                    }
                }
                params.push((r, required.contains(&arg.as_str())));
            }
            let n = params.len();
            if n == 0 {
                rules.push_str(&format!("f{i}: {open_fn}\n"));
            } else if n > MAX_ANY_ORDER_PARAMS {
                let seq: Vec<String> =
                    params.iter().map(|(r, req)| if *req { r.clone() } else { format!("{r}?") }).collect();
                rules.push_str(&format!("f{i}: {open_fn} {}\n", seq.join(" ")));
            } else {
                // One rule per set of parameters written so far (a bit mask): next, any
                // parameter not yet written; the end only once the required ones are in.
                let full = (1usize << n) - 1;
                let need: usize = params.iter().enumerate().filter(|(_, (_, req))| *req).map(|(j, _)| 1 << j).sum();
                let state = |m: usize| format!("f{i}_s{m}");
                for m in 0..full {
                    let alts: Vec<String> = (0..n)
                        .filter(|j| m & (1 << j) == 0)
                        .map(|j| {
                            let next = m | (1 << j);
                            if next == full {
                                params[j].0.clone()
                            } else {
                                format!("{} {}", params[j].0, state(next))
                            }
                        })
                        .collect();
                    let optional = if m & need == need { "?" } else { "" };
                    rules.push_str(&format!("{}: ({}){optional}\n", state(m), alts.join(" | ")));
                }
                rules.push_str(&format!("f{i}: {open_fn} {}\n", state(0)));
            }
        }
        format!("call: \"<tool_call>\\n\" ({}) \"</function>\\n</tool_call>\"\n{rules}", fns.join(" | "))
    }

    /// The messages that carry tool results back in `format`: one user turn of
    /// [`Tools::result_turn`] (built-in), or one `tool` message per result.
    pub fn result_messages(format: ToolFormat, results: &[ToolResult]) -> Vec<crate::tokenizer::ChatMessage> {
        use crate::tokenizer::{ChatMessage, Role};
        match format {
            ToolFormat::Builtin => vec![ChatMessage::new(Role::User, Self::result_turn(results))],
            _ => results.iter().map(|r| ChatMessage::new(Role::Tool, r.content.clone())).collect(),
        }
    }

    /// The tools a call may name under the choice.
    fn offered(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(move |t| match &self.choice {
            ToolChoice::Named(n) => &t.name == n,
            ToolChoice::None => false,
            _ => true,
        })
    }

    /// The JSON Schema of a tool-call answer.
    fn calls_schema(&self) -> Value {
        let one: Vec<Value> = self
            .offered()
            .map(|t| {
                json!({
                    "type": "object",
                    "properties": { "name": { "const": t.name }, "arguments": t.parameters },
                    "required": ["name", "arguments"],
                    "additionalProperties": false
                })
            })
            .collect();
        json!({
            "type": "object",
            "properties": { "tool_calls": { "type": "array", "minItems": 1, "maxItems": MAX_CALLS_PER_TURN, "items": { "anyOf": one } } },
            "required": ["tool_calls"],
            "additionalProperties": false,
            "x-guidance": { "whitespace_flexible": false }
        })
    }

    /// The output constraint for the answer.
    pub fn constraint(&self) -> OutputConstraint {
        match self.choice {
            ToolChoice::None => OutputConstraint::Text,
            ToolChoice::Required | ToolChoice::Named(_) => {
                OutputConstraint::JsonSchema(self.calls_schema().to_string())
            }
            // Text that does not start with `{`, or calls (constrained from the first `{`).
            ToolChoice::Auto => OutputConstraint::Grammar(format!(
                "start: TEXT | calls\ncalls: %json {}\nTEXT: /[^{{\\s](?s:.*)/\n",
                self.calls_schema()
            )),
        }
    }

    /// The calls in an answer, with ids `call_<turn>_<index>`; empty when the answer is text.
    pub fn parse_calls(&self, text: &str, turn: usize) -> Vec<ToolCall> {
        let Ok(v) = serde_json::from_str::<Value>(text.trim()) else { return Vec::new() };
        let Some(calls) = v.get("tool_calls").and_then(Value::as_array) else { return Vec::new() };
        calls
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let name = c.get("name")?.as_str()?;
                self.tools.iter().any(|t| t.name == name).then(|| ToolCall {
                    id: format!("call_{turn}_{i}"),
                    name: name.to_string(),
                    arguments: c.get("arguments").cloned().unwrap_or_else(|| json!({})),
                })
            })
            .collect()
    }

    /// Checks a call that did not come out of our constrained decoding (a cloud model's): its
    /// tool is one the choice offers and its arguments validate against that tool's schema
    /// ([`super::validate`]). The error names the tool by position and the failing place and
    /// rule, never an argument value.
    pub fn check_call(&self, call: &ToolCall) -> Result<()> {
        let Some(tool) = self.offered().find(|t| t.name == call.name) else {
            return Err(Error::InvalidToolCall { reason: "the call names a tool that was not offered".into() });
        };
        super::validate::check(&tool.parameters, &call.arguments).map_err(|e| Error::InvalidToolCall {
            reason: format!("the arguments of `{}` do not match its schema: {e}", tool.name),
        })
    }

    /// The user turn that carries tool results back to the model.
    pub fn result_turn(results: &[ToolResult]) -> String {
        results
            .iter()
            .map(|r| format!("<tool_result id=\"{}\" name=\"{}\">\n{}\n</tool_result>", r.id, r.name, r.content.trim()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Most parameters of one tool whose Qwen 3.5 calls may write them in any order (the
/// constraint keeps one rule per subset of them: 2^8 = 256); a tool with more takes them in
/// the schema's order.
pub const MAX_ANY_ORDER_PARAMS: usize = 8;

/// How a Qwen 3.5 call writes an argument's value (its template prints a string as it is, a
/// mapping or list as `tojson`, anything else as Python's `str`).
#[derive(Debug, Clone, PartialEq)]
enum XmlValue {
    /// Raw text: the schema takes only strings (`type: "string"`, an `enum`/`const` of strings,
    /// an `anyOf`/`oneOf` of such schemas) or anything (no keyword but annotations).
    Raw,
    /// Raw text (one of these string-only schemas) or `None`: strings or null.
    RawOrNone(Vec<Value>),
    /// One of these Python literals: `True`/`False` for a boolean, `None` for a null.
    Python(Vec<&'static str>),
    /// JSON, as `tojson` prints it.
    Json,
}

/// [`XmlValue`] of an argument's schema.
fn xml_value_kind(schema: &Value) -> XmlValue {
    if xml_raw_string(schema) {
        return XmlValue::Raw;
    }
    let Some(m) = schema.as_object() else { return XmlValue::Json };
    let only = |k: &str| {
        m.keys().all(|x| x == k || matches!(x.as_str(), "description" | "title" | "default" | "examples" | "$comment"))
    };
    let is_null = |v: &Value| {
        v.get("type").is_some_and(|t| t == "null")
            && v.as_object().is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "type" | "description" | "title")))
    };
    // `type: ["string", "null"]` (with string keywords) and `type: "boolean"` / `"null"`.
    match m.get("type") {
        Some(Value::String(t)) if t == "boolean" && only("type") => return XmlValue::Python(vec!["True", "False"]),
        Some(Value::String(t)) if t == "null" && only("type") => return XmlValue::Python(vec!["None"]),
        Some(Value::Array(ts))
            if ts.len() == 2
                && ts.contains(&json!("string"))
                && ts.contains(&json!("null"))
                && !m.contains_key("enum")
                && !m.contains_key("const") =>
        {
            let mut branch = m.clone();
            branch.insert("type".into(), json!("string"));
            return XmlValue::RawOrNone(vec![Value::Object(branch)]);
        }
        _ => {}
    }
    // `anyOf`/`oneOf` of string-only schemas and at most one null.
    for key in ["anyOf", "oneOf"] {
        let Some(list) = m.get(key).and_then(Value::as_array).filter(|_| only(key)) else { continue };
        let (nulls, strings): (Vec<&Value>, Vec<&Value>) = list.iter().partition(|b| is_null(b));
        let all_strings = !strings.is_empty()
            && strings
                .iter()
                .all(|b| xml_raw_string(b) && b.as_object().is_some_and(|o| !o.is_empty() && !only_annotations(o)));
        if all_strings {
            match nulls.len() {
                0 => return XmlValue::Raw,
                1 => return XmlValue::RawOrNone(strings.into_iter().cloned().collect()),
                _ => {}
            }
        }
    }
    XmlValue::Json
}

fn only_annotations(m: &serde_json::Map<String, Value>) -> bool {
    m.keys().all(|k| matches!(k.as_str(), "description" | "title" | "default" | "examples" | "$comment"))
}

/// An argument value as Qwen 3.5's template prints it: a string as it is, a mapping or list as
/// `tojson`, anything else as Python's `str` (`True`, `None`, `2.0`).
fn xml_value_text(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Object(_) | Value::Array(_) => py_json(v),
        other => crate::tokenizer::jinja_py::py_str(&minijinja::Value::from_serialize(other)),
    }
}

/// Whether a schema takes only strings (`type: "string"`, or an `enum`/`const` of strings), or
/// takes anything (no keyword but annotations).
fn xml_raw_string(schema: &Value) -> bool {
    let Some(m) = schema.as_object() else { return true };
    let all_strings = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
    if let Some(ty) = m.get("type") {
        return ty == "string" || ty.as_array().is_some_and(|a| a.len() == 1 && a[0] == "string");
    }
    if let Some(e) = m.get("enum") {
        return all_strings(e);
    }
    if let Some(c) = m.get("const") {
        return c.is_string();
    }
    if let Some(list) = m.get("anyOf").or_else(|| m.get("oneOf")).and_then(Value::as_array) {
        // A union of string-only schemas is raw text (the branches' lexemes joined), unless a
        // branch takes anything.
        return m.keys().all(|k| {
            matches!(k.as_str(), "anyOf" | "oneOf" | "description" | "title" | "default" | "examples" | "$comment")
        }) && !(m.contains_key("anyOf") && m.contains_key("oneOf"))
            && !list.is_empty()
            && list.iter().all(|b| b.as_object().is_some_and(|o| !only_annotations(o)) && xml_raw_string(b));
    }
    only_annotations(m)
}

/// The lexeme of a raw-text argument value with its closing `\n</parameter>` (see
/// [`Tools::xml_call_rules`]): the value as its schema allows (enum/const literals, `pattern`,
/// `minLength`/`maxLength`; an `anyOf`/`oneOf` of such schemas: any of them), holding no
/// `</parameter>`; with `or_none` (strings or null) also `None`, which is then no string.
fn raw_value_regex(schema: &Value, or_none: bool) -> String {
    const NO_CLOSE_INSIDE: &str = "~/(?s:.*)<\\/parameter>(?s:.+)/";
    const NONE: &str = "/None\\n<\\/parameter>/";
    let branches: Vec<&Value> = match schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        _ => vec![schema],
    };
    let strings = branches.iter().map(|b| format!("({})", raw_branch_regex(b))).collect::<Vec<_>>().join(" | ");
    if or_none {
        format!("(({strings}) & ~{NONE} & {NO_CLOSE_INSIDE}) | {NONE}")
    } else {
        format!("({strings}) & {NO_CLOSE_INSIDE}")
    }
}

/// One string-only schema's part of [`raw_value_regex`] (without the `</parameter>` check).
fn raw_branch_regex(schema: &Value) -> String {
    const CLOSE: &str = "\\n<\\/parameter>";
    let literals: Option<Vec<&str>> = match (schema.get("const"), schema.get("enum")) {
        (Some(Value::String(c)), _) => Some(vec![c.as_str()]),
        (_, Some(Value::Array(e))) => Some(e.iter().filter_map(Value::as_str).collect()),
        _ => None,
    };
    if let Some(lits) = literals {
        let alts: Vec<String> = lits.iter().filter(|l| !l.contains("</parameter>")).map(|l| regex_literal(l)).collect();
        // No literal left matches nothing (the `[^\s\S]` class is empty).
        let alts = if alts.is_empty() { "[^\\s\\S]".to_string() } else { alts.join("|") };
        return format!("/(?:{alts}){CLOSE}/");
    }
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let len = match schema.get("maxLength").and_then(Value::as_u64) {
        Some(max) => format!("(?s:.{{{min},{max}}})"),
        None if min > 0 => format!("(?s:.{{{min},}})"),
        None => "(?s:.*)".to_string(),
    };
    let mut re = format!("/{len}{CLOSE}/");
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        // JSON Schema patterns search (unanchored) unless they anchor themselves.
        let (head, p) = match p.strip_prefix('^') {
            Some(rest) => ("", rest),
            None => ("(?s:.*)", p),
        };
        let (p, tail) = match p.strip_suffix('$').filter(|q| !q.ends_with('\\')) {
            Some(rest) => (rest, ""),
            None => (p, "(?s:.*)"),
        };
        re.push_str(&format!(" & /{head}(?:{}){tail}{CLOSE}/", llguidance::regex_to_lark(p, "dw")));
    }
    re
}

/// `text` as a regular expression that matches exactly it (in a Lark `/…/`).
fn regex_literal(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_punctuation()
                && !matches!(c, '_' | '\'' | '"' | '<' | '>' | '=' | ',' | ':' | ';' | '!' | '@' | '%' | '`') =>
            {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` as a Lark string literal (JSON's escapes).
fn lark_str(text: &str) -> String {
    Value::from(text).to_string()
}

/// Python's `json.dumps(v, ensure_ascii=False)` (separators `", "` and `": "`), as chat templates'
/// `tojson` prints (strings and numbers as serde_json writes them).
pub fn py_json(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("[{}]", items.iter().map(py_json).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), py_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn bad(reason: String) -> Error {
    Error::InvalidConstraint { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart() -> Tools {
        Tools::from_json(r#"[{"type":"function","function":{"name":"add_to_cart","description":"Adds an item","parameters":{"type":"object","properties":{"item":{"type":"string"},"qty":{"type":"integer"}},"required":["item","qty"]}}},{"name":"open_work_order","parameters":{"type":"object","properties":{"id":{"type":"integer"}}}}]"#).unwrap()
    }

    #[test]
    fn tool_lists_are_read_and_checked() {
        let t = cart();
        assert_eq!(t.tools.len(), 2);
        assert!(t.system_block().contains("add_to_cart: Adds an item"));
        for bad in [
            r#"{}"#,
            r#"[]"#,
            r#"[{"name":"a b"}]"#,
            r#"[{"name":"a"},{"name":"a"}]"#,
            r#"[{"name":"a","parameters":{"type":"string"}}]"#,
            "nope",
        ] {
            assert!(matches!(Tools::from_json(bad), Err(Error::InvalidConstraint { .. })), "{bad}");
        }
        let named = Tools { choice: ToolChoice::Named("nope".into()), ..cart() };
        assert!(named.validate().is_err());
    }

    #[test]
    fn calls_are_parsed_with_ids_and_text_is_not_a_call() {
        let t = cart();
        let calls = t.parse_calls(r#"{"tool_calls":[{"name":"add_to_cart","arguments":{"item":"apple","qty":2}},{"name":"open_work_order","arguments":{"id":7}}]}"#, 3);
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str(), &calls[0].arguments),
            ("call_3_0", "add_to_cart", &json!({"item": "apple", "qty": 2}))
        );
        assert_eq!(calls[1].id, "call_3_1");
        assert!(t.parse_calls("Sure, here you go.", 0).is_empty());
        assert!(t.parse_calls(r#"{"tool_calls":[{"name":"unknown","arguments":{}}]}"#, 0).is_empty());
        assert_eq!(
            Tools::result_turn(&[ToolResult {
                id: "call_3_0".into(),
                name: "add_to_cart".into(),
                content: "{\"ok\":true}".into()
            }]),
            "<tool_result id=\"call_3_0\" name=\"add_to_cart\">\n{\"ok\":true}\n</tool_result>"
        );
    }

    /// The thinking state is read off the prompt's end, and an answer's calls are read after its
    /// thinking, which ends at the first `</think>` (the grammar keeps it out of the thinking
    /// text): thinking that drafts a call, or a `</think>` inside a call's arguments, changes
    /// nothing. (Before, the calls were read after the last `</think>`: the argument's
    /// `</think>` lost the call, and a `<tool_call>` in free text after the answer's start was
    /// taken as a call with unchecked arguments.)
    #[test]
    fn thinking_state_and_calls_after_thinking() {
        assert_eq!(Thinking::at_prompt_end(false, "<|im_start|>assistant\n<think>\n", 100), Thinking::No);
        assert_eq!(Thinking::at_prompt_end(true, "<|im_start|>assistant\n", 100), Thinking::May { budget: 50 });
        assert_eq!(
            Thinking::at_prompt_end(true, "<|im_start|>assistant\n<think>\n", 100),
            Thinking::Open { budget: 50 }
        );
        assert_eq!(Thinking::at_prompt_end(true, "assistant\n<think>\n\n</think>\n\n", 1), Thinking::Off);
        let t = Tools::from_json(r#"[{"name":"save_note","parameters":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}]"#).unwrap();
        let call = "<tool_call>\n{\"name\": \"save_note\", \"arguments\": {\"text\": \"a</think>b\"}}\n</tool_call>";
        let draft = "<tool_call>\n{\"name\": \"save_note\", \"arguments\": {\"text\": \"draft\"}}\n</tool_call>";
        let want = vec![ToolCall {
            id: "call_0_0".into(),
            name: "save_note".into(),
            arguments: json!({"text": "a</think>b"}),
        }];
        for (thinking, text) in [
            (Thinking::May { budget: 9 }, format!("<think>\nI could write {draft}, or 1 < 2.\n</think>\n\n{call}")),
            (Thinking::Open { budget: 9 }, format!("I could write {draft}.\n</think>\n\n{call}")),
            (Thinking::May { budget: 9 }, call.to_string()),
            (Thinking::Off, call.to_string()),
        ] {
            assert_eq!(t.parse_calls_thinking(ToolFormat::Hermes, thinking, &text, 0), want, "{thinking:?}");
        }
        let (thinking, rest) = Thinking::May { budget: 9 }.split("<think>\nhm < ok\n</think>\n\nHello.");
        assert_eq!((thinking, rest), (Some("\nhm < ok\n"), "Hello."));
        // Free text that mentions a call is text.
        assert!(t.parse_calls_thinking(ToolFormat::Hermes, Thinking::No, &format!("Sure! {call}"), 0).is_empty());
        assert!(t
            .parse_calls_thinking(
                ToolFormat::Hermes,
                Thinking::May { budget: 9 },
                &format!("<think>\n</think>\n\nSure! {draft}"),
                0
            )
            .is_empty());
    }

    /// Qwen 3.5's XML calls: the text a call is written as (what its template prints for
    /// `tool_calls`) parses back to the call, string values as strings, others as JSON; calls
    /// are read only from the answer's start, after the thinking; a call of an unknown tool, an
    /// argument given twice or a broken block ends the reading.
    #[test]
    fn qwen_xml_calls_round_trip() {
        let t = Tools::from_json(r#"[{"name":"add_to_cart","parameters":{"type":"object","properties":{"item":{"type":"string"},"qty":{"type":"integer"},"opts":{"type":"object"},"tags":{"type":"array"},"note":{}},"required":["item","qty"]}}]"#).unwrap();
        let calls = vec![
            (
                "add_to_cart".to_string(),
                json!({"item": "12", "qty": 2, "opts": {"gift": true, "n": [1, 2]}, "tags": ["a"], "note": "two\nlines"}),
            ),
            ("add_to_cart".to_string(), json!({"item": "pear", "qty": 1})),
        ];
        let text = Tools::call_text(ToolFormat::QwenXml, &calls);
        assert!(text.starts_with("<tool_call>\n<function=add_to_cart>\n<parameter=item>\n12\n</parameter>\n<parameter=qty>\n2\n</parameter>\n<parameter=opts>\n{\"gift\": true, \"n\": [1, 2]}\n</parameter>\n"), "{text}");
        assert!(text.contains("</function>\n</tool_call>\n<tool_call>\n<function=add_to_cart>\n"), "{text}");
        let got = t.parse_calls_thinking(
            ToolFormat::QwenXml,
            Thinking::Open { budget: 9 },
            &format!("hm\n</think>\n\n{text}"),
            2,
        );
        let got: Vec<(String, Value)> = got.into_iter().map(|c| (c.name, c.arguments)).collect();
        assert_eq!(got, calls);
        for c in t.parse_calls_for(ToolFormat::QwenXml, &text, 0) {
            t.check_call(&c).unwrap();
        }
        assert!(t.parse_calls_for(ToolFormat::QwenXml, &format!("Sure. {text}"), 0).is_empty());
        let unknown = text.replace("<function=add_to_cart>", "<function=delete_account>");
        assert!(t.parse_calls_for(ToolFormat::QwenXml, &unknown, 0).is_empty());
        let twice = "<tool_call>\n<function=add_to_cart>\n<parameter=qty>\n1\n</parameter>\n<parameter=qty>\n2\n</parameter>\n</function>\n</tool_call>";
        assert!(t.parse_calls_for(ToolFormat::QwenXml, twice, 0).is_empty());
        // Detection: the XML markers win over `tool_call.arguments` (which the template also has).
        let src = "{% for tool in tools %}{% endfor %}<tool_call>\n<function=' + tool_call.name + '>\n<parameter=' + k {{ tool_call.arguments }}";
        assert_eq!(ToolFormat::detect(src), ToolFormat::QwenXml);
        assert_eq!(
            ToolFormat::detect("{{ tools }}<tool_call>\n{{ tool_call.arguments | tojson }}"),
            ToolFormat::Hermes
        );
    }

    #[test]
    fn each_choice_has_its_constraint() {
        let mut t = cart();
        assert!(matches!(t.constraint(), OutputConstraint::Grammar(g) if g.contains("%json")));
        t.choice = ToolChoice::Required;
        assert!(matches!(t.constraint(), OutputConstraint::JsonSchema(s) if s.contains("open_work_order")));
        t.choice = ToolChoice::Named("open_work_order".into());
        assert!(matches!(t.constraint(), OutputConstraint::JsonSchema(s) if !s.contains("add_to_cart")));
        t.choice = ToolChoice::None;
        assert_eq!((t.constraint(), t.system_block()), (OutputConstraint::Text, String::new()));
    }
}
