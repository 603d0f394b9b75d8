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

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::OutputConstraint;
use crate::{Error, Result};

/// Most tools in one request.
pub const MAX_TOOLS: usize = 64;
/// Most calls in one answer.
pub const MAX_CALLS_PER_TURN: usize = 4;

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

    /// The user turn that carries tool results back to the model.
    pub fn result_turn(results: &[ToolResult]) -> String {
        results
            .iter()
            .map(|r| format!("<tool_result id=\"{}\" name=\"{}\">\n{}\n</tool_result>", r.id, r.name, r.content.trim()))
            .collect::<Vec<_>>()
            .join("\n")
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
