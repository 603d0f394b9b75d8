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
//! # The model's own format (Qwen 2.5 / Qwen 3, Llama 3.x)
//!
//! A chat template that takes `tools` ([`ToolFormat::detect`]) shows the tools itself (the
//! template is rendered with `tools` = [`Tools::template_tools`]; no block is added), and the
//! calls are constrained to the family's format, byte for byte what its template prints for a
//! call (Python `json.dumps` spacing):
//!
//! - [`ToolFormat::Hermes`] (Qwen): `<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>`,
//!   1 to [`MAX_CALLS_PER_TURN`] of them separated by `\n`; results are `tool` messages (the
//!   template wraps them in `<tool_response>`). Under `auto`, text is any answer that does not
//!   start with `<to`. Under `auto` a model that thinks (Qwen 3: its template handles
//!   `<think>`) may open with a `<think>…</think>` block of free text (no `<` in it, at most half
//!   the answer's `max_tokens`); after it a call is constrained as without thinking
//!   ([`Tools::constraint_for_model`]); `required` and a named tool call at once.
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

/// The thinking block of [`Tools::constraint_for_model`]: `<think>`, free text without `<` of at
/// most `budget` tokens, `</think>` (forced once the budget is spent), then at most 4 whitespace
/// characters. The text cannot hold `<` so that its lexeme ends where `</think>` starts (a
/// greedy lexeme that could hold `<` would run past it; llguidance's lazy `suffix=` ends one, but
/// its `max_tokens` then ends it without the suffix).
fn think_rules(budget: usize) -> String {
    format!(
        "think: \"<think>\" think_body? \"</think>\" WS?\n\
         think_body[max_tokens={}]: THINK_TEXT\n\
         THINK_TEXT: /[^<]+/\n\
         WS: /[ \\t\\r\\n]{{1,4}}/\n",
        budget.max(1)
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
    /// Llama 3.x: one JSON call with `parameters`, results in the `ipython` role.
    Llama3,
}

impl ToolFormat {
    /// The format a chat template's source handles: it must take `tools` and print calls as
    /// `<tool_call>` (Qwen 2.5/3) or JSON with `"parameters"` beside an `ipython` role (Llama
    /// 3.1/3.2); anything else is [`ToolFormat::Builtin`].
    pub fn detect(template_source: &str) -> Self {
        let takes_tools = template_source.contains("tools");
        if takes_tools && template_source.contains("<tool_call>") && template_source.contains("tool_call.arguments") {
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
            let ok = (1..=64).contains(&t.name.len()) && t.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
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
            s.push_str(&format!("- {}: {}\n  arguments (JSON Schema): {}\n", t.name, t.description.trim(), t.parameters));
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

    /// The output constraint for the answer in `format`.
    pub fn constraint_for(&self, format: ToolFormat) -> OutputConstraint {
        self.constraint_for_model(format, None)
    }

    /// [`Tools::constraint_for`] for a model that may think first (`think_budget`: its template
    /// handles `<think>` blocks, Qwen 3, [`crate::tokenizer::ChatTemplate::thinks`]; `None`
    /// otherwise). Under `auto`, in the Hermes format, the answer may open with `<think>`, free
    /// text without `<` of at most `think_budget` tokens, `</think>` (forced once the budget is
    /// spent) and up to 4 whitespace characters; then a call is constrained from its first byte as
    /// without thinking, or text is free (or nothing). `required` and a named tool are unchanged:
    /// the answer is the call, at once. [`think_budget_for`] gives half the answer's
    /// `max_tokens`, so a call still fits after the thinking.
    pub fn constraint_for_model(&self, format: ToolFormat, think_budget: Option<usize>) -> OutputConstraint {
        match (format, &self.choice) {
            (ToolFormat::Builtin, _) | (_, ToolChoice::None) => self.constraint(),
            (ToolFormat::Hermes, choice) => {
                let call = format!("call: \"<tool_call>\\n\" obj \"\\n</tool_call>\"\nobj: %json {}\n", self.family_call_schema("arguments"));
                let more = "(\"\\n\" call)?".repeat(MAX_CALLS_PER_TURN - 1);
                let auto = *choice == ToolChoice::Auto;
                let start = match (auto, think_budget) {
                    (true, None) => "start: TEXT | calls\nTEXT: /([^<\\s]|<[^t]|<t[^o])(?s:.*)/\n".to_string(),
                    // Text may not open with `<th` either: `<think>` is the thinking's alone.
                    (true, Some(b)) => format!("start: think (TEXT | calls)? | TEXT | calls\nTEXT: /([^<\\s]|<[^t]|<t[^oh])(?s:.*)/\n{}", think_rules(b)),
                    // `required` and a named tool: the answer is the call, at once.
                    (false, _) => "start: calls\n".to_string(),
                };
                OutputConstraint::Grammar(format!("{start}calls: call {more}\n{call}"))
            }
            (ToolFormat::Llama3, ToolChoice::Auto) => {
                OutputConstraint::Grammar(format!("start: TEXT | call\ncall: %json {}\nTEXT: /[^{{\\s](?s:.*)/\n", self.family_call_schema("parameters")))
            }
            (ToolFormat::Llama3, _) => OutputConstraint::JsonSchema(self.family_call_schema("parameters").to_string()),
        }
    }

    /// The calls in an answer written in `format` (ids `call_<turn>_<index>`); empty for text.
    pub fn parse_calls_for(&self, format: ToolFormat, text: &str, turn: usize) -> Vec<ToolCall> {
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
            ToolFormat::Hermes => {
                // After any thinking; each `<tool_call>…</tool_call>` block holds one call.
                let body = text.rsplit_once("</think>").map_or(text, |(_, after)| after);
                let mut calls = Vec::new();
                for block in body.split("<tool_call>").skip(1) {
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
                let wire: Vec<String> = calls.iter().map(|(n, a)| format!("{{\"name\":{},\"arguments\":{a}}}", Value::from(n.as_str()))).collect();
                format!("{{\"tool_calls\":[{}]}}", wire.join(","))
            }
            ToolFormat::Hermes => calls
                .iter()
                .map(|(n, a)| format!("<tool_call>\n{{\"name\": {}, \"arguments\": {}}}\n</tool_call>", py_json(&Value::from(n.as_str())), py_json(a)))
                .collect::<Vec<_>>()
                .join("\n"),
            ToolFormat::Llama3 => calls
                .iter()
                .map(|(n, a)| format!("{{\"name\": {}, \"parameters\": {}}}", py_json(&Value::from(n.as_str())), py_json(a)))
                .collect::<Vec<_>>()
                .join("\n"),
        }
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
            ToolChoice::Required | ToolChoice::Named(_) => OutputConstraint::JsonSchema(self.calls_schema().to_string()),
            // Text that does not start with `{`, or calls (constrained from the first `{`).
            ToolChoice::Auto => OutputConstraint::Grammar(format!("start: TEXT | calls\ncalls: %json {}\nTEXT: /[^{{\\s](?s:.*)/\n", self.calls_schema())),
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
        super::validate::check(&tool.parameters, &call.arguments)
            .map_err(|e| Error::InvalidToolCall { reason: format!("the arguments of `{}` do not match its schema: {e}", tool.name) })
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

/// The thinking budget of a tool-call answer of at most `max_tokens` tokens from a model that
/// thinks (`thinks`): half of them, so a call still fits after the thinking; `None` when the
/// model does not think.
pub fn think_budget_for(thinks: bool, max_tokens: usize) -> Option<usize> {
    thinks.then_some((max_tokens / 2).max(1))
}

/// Python's `json.dumps(v, ensure_ascii=False)` (separators `", "` and `": "`), as chat templates'
/// `tojson` prints (strings and numbers as serde_json writes them).
pub fn py_json(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("[{}]", items.iter().map(py_json).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), py_json(v))).collect::<Vec<_>>().join(", ")
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
        for bad in [r#"{}"#, r#"[]"#, r#"[{"name":"a b"}]"#, r#"[{"name":"a"},{"name":"a"}]"#, r#"[{"name":"a","parameters":{"type":"string"}}]"#, "nope"] {
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
        assert_eq!((calls[0].id.as_str(), calls[0].name.as_str(), &calls[0].arguments), ("call_3_0", "add_to_cart", &json!({"item": "apple", "qty": 2})));
        assert_eq!(calls[1].id, "call_3_1");
        assert!(t.parse_calls("Sure, here you go.", 0).is_empty());
        assert!(t.parse_calls(r#"{"tool_calls":[{"name":"unknown","arguments":{}}]}"#, 0).is_empty());
        assert_eq!(Tools::result_turn(&[ToolResult { id: "call_3_0".into(), name: "add_to_cart".into(), content: "{\"ok\":true}".into() }]), "<tool_result id=\"call_3_0\" name=\"add_to_cart\">\n{\"ok\":true}\n</tool_result>");
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
