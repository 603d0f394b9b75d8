//! Tool calling in the model families' own formats, on the synthesized llama / qwen2 / qwen3
//! GGUFs carrying the real Llama 3.2 / Qwen 2.5 / Qwen 3 chat templates
//! (`tests/reference/make_tool_template_synth.py`). The weights are random, so only the
//! structure is checked: the format is detected, the constrained answer is a call in the family's
//! format (byte for byte what its template prints for such a call), the prompt of the next turn
//! is exactly the template's rendering of the OpenAI-form conversation (tools, the call as
//! `tool_calls`, the result as a `tool` message), and only the new messages are prefilled.

mod common_model;

use std::path::PathBuf;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::{GenerationParams, SessionConfig};
use edgewise_core::structured::tools::{ToolChoice, ToolFormat, ToolResult, Tools};
use edgewise_core::tokenizer::Role;
use serde_json::{json, Value};

fn model(name: &str) -> Option<PathBuf> {
    common_model::synth_model(name, "tests/reference/make_tool_template_synth.py")
}

fn tools() -> Tools {
    // Enums and bounded integers: the canonical text of a call is then unique.
    Tools::from_json(
        &json!([
            {"type": "function", "function": {"name": "add_to_cart", "description": "Adds an item to the shopping cart.",
                "parameters": {"type": "object", "properties": {"item": {"enum": ["apple", "pear", "milk"]}, "qty": {"type": "integer", "minimum": 1, "maximum": 20}}, "required": ["item", "qty"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Köln"]}}, "required": ["city"], "additionalProperties": false}}}
        ])
        .to_string(),
    )
    .unwrap()
}

fn check_family(name: &str, want: ToolFormat) {
    let Some(path) = model(name) else { return };
    let e =
        Engine::load(path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    let mut s = e.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap();
    assert_eq!(s.tool_format(), want, "{name}");
    let mut t = tools();
    t.choice = ToolChoice::Required;
    s.set_tools(Some(t.clone())).unwrap();
    let user = "Add two apples to my cart, please.";
    let g = s.chat(user, &GenerationParams::greedy(160), &mut |_| true).unwrap();
    assert_eq!(g.valid, Some(true), "{name}: {:?}", g.text);
    assert!(!g.tool_calls.is_empty(), "{name}: {:?}", g.text);
    if want == ToolFormat::Llama3 {
        assert_eq!(g.tool_calls.len(), 1, "{name}: Llama 3.x makes one call per answer");
    }
    // The call is written in the family's format, exactly as its template prints these calls.
    let calls: Vec<(String, Value)> = g.tool_calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
    assert_eq!(g.text, Tools::call_text(want, &calls), "{name}");
    match want {
        ToolFormat::Hermes => assert!(
            g.text.starts_with("<tool_call>\n{\"name\": \"") && g.text.ends_with("}\n</tool_call>"),
            "{name}: {:?}",
            g.text
        ),
        _ => {
            assert!(g.text.starts_with("{\"name\": \"") && g.text.contains("\"parameters\": {"), "{name}: {:?}", g.text)
        }
    }
    // The results go back as `tool` messages; only they (and the turn markers) are prefilled.
    let results: Vec<ToolResult> = g
        .tool_calls
        .iter()
        .map(|c| ToolResult {
            id: c.id.clone(),
            name: c.name.clone(),
            content: format!("{{\"ok\": true, \"for\": \"{}\"}}", c.name),
        })
        .collect();
    let mut t = tools();
    t.choice = ToolChoice::Auto;
    s.set_tools(Some(t.clone())).unwrap();
    let cached_before = s.cached_tokens();
    let g2 = s.send_tool_results(&results, &GenerationParams::greedy(24), &mut |_| true).unwrap();
    assert_eq!(g2.metrics.prefilled_tokens, g2.metrics.prompt_tokens - cached_before, "{name}");
    let roles: Vec<Role> = s.history().iter().map(|m| m.role).collect();
    let mut want_roles = vec![Role::User, Role::Assistant];
    want_roles.extend(results.iter().map(|_| Role::Tool));
    want_roles.push(Role::Assistant);
    assert_eq!(roles, want_roles, "{name}");
    // The prompt the model saw is the real template's rendering of the OpenAI-form conversation.
    let prompt = e.tokenizer().decode(&s.cached_token_ids()[..g2.metrics.prompt_tokens], false).unwrap();
    let mut msgs = vec![json!({"role": "user", "content": user})];
    let wire_calls: Vec<Value> = g
        .tool_calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect();
    msgs.push(json!({"role": "assistant", "content": "", "tool_calls": wire_calls}));
    msgs.extend(results.iter().map(|r| json!({"role": "tool", "tool_call_id": r.id, "content": r.content})));
    let rendered = e.template().render_json(&Value::Array(msgs), t.template_tools().as_ref(), true).unwrap();
    assert_eq!(prompt, rendered, "{name}");
    match want {
        ToolFormat::Hermes => {
            assert!(prompt.contains("# Tools") && prompt.contains("<tool_response>\n{\"ok\": true"), "{name}")
        }
        _ => assert!(
            prompt.contains("Given the following functions")
                && prompt.contains("<|start_header_id|>ipython<|end_header_id|>"),
            "{name}"
        ),
    }
    // A text answer is free; a started call must be complete and valid.
    if g2.text.starts_with("<tool_call>") || g2.text.starts_with('{') {
        assert_eq!(g2.valid, Some(true), "{name}: {:?}", g2.text);
    }
    eprintln!(
        "{name}: {} call(s), then {} prefilled of {}",
        g.tool_calls.len(),
        g2.metrics.prefilled_tokens,
        g2.metrics.prompt_tokens
    );

    // The router's local model (and `edgewise serve`) uses the family's format too: the same
    // first answer as the session, and a conversation in OpenAI form (calls, `tool` results).
    use edgewise_core::router::{ChatMessage, ChatRequest, LocalEngine, LocalModel, StructuredRequest};
    let local = LocalEngine::new(e.clone(), SessionConfig { max_context: 2048, ..Default::default() }, GenerationParams::greedy(160)).unwrap();
    let mut t = tools();
    t.choice = ToolChoice::Required;
    let out = StructuredRequest { tools: Some(t), ..Default::default() };
    let a = local.generate_structured(&ChatRequest::user(user), &out, &mut |_| true).unwrap();
    assert_eq!((a.answer.text.as_str(), a.tool_calls.len()), (g.text.as_str(), g.tool_calls.len()), "{name}: LocalEngine");
    let mut req = ChatRequest::user(user);
    req.messages.push(ChatMessage::tool_calls(a.tool_calls.clone()));
    req.messages.extend(results.iter().map(|r| ChatMessage::tool_result(r.id.clone(), r.content.clone())));
    let out = StructuredRequest { tools: Some(tools()), ..Default::default() };
    let a2 = local.generate_structured(&req, &out, &mut |_| true).unwrap();
    // Its prompt is the template's rendering of that conversation (the session's second prompt
    // holds the call's sampled tokens instead): as many tokens as the whole text encoded, give
    // or take one per message (message contents are encoded apart from the template text, so a
    // merge across that boundary does not happen).
    let encoded = e.tokenizer().encode(&rendered, false).unwrap();
    let slack = req.messages.len();
    assert!(a2.answer.prompt_tokens.abs_diff(encoded.len()) <= slack, "{name}: {} vs {}", a2.answer.prompt_tokens, encoded.len());
    // Without the tools in the template (the built-in block instead), it would be far off.
    assert!(a2.answer.prompt_tokens > 250, "{name}: {}", a2.answer.prompt_tokens);
}

#[test]
fn qwen25_template_tool_calls_and_results() {
    check_family("qwen25-tools", ToolFormat::Hermes);
}

#[test]
fn qwen3_template_tool_calls_and_results() {
    check_family("qwen3-tools", ToolFormat::Hermes);
}

#[test]
fn llama32_template_tool_calls_and_results() {
    check_family("llama32-tools", ToolFormat::Llama3);
}

/// The plain synthesized qwen2 (a ChatML template without tools) keeps the built-in format.
#[test]
fn a_template_without_tools_uses_the_builtin_format() {
    let Some(path) = model("qwen2") else { return };
    let e =
        Engine::load(path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    let mut s = e.new_session(SessionConfig { max_context: 1024, ..Default::default() }).unwrap();
    assert_eq!(s.tool_format(), ToolFormat::Builtin);
    let mut t = tools();
    t.choice = ToolChoice::Named("get_weather".into());
    s.set_tools(Some(t)).unwrap();
    let g = s.chat("Weather in Oslo?", &GenerationParams::greedy(240), &mut |_| true).unwrap();
    assert_eq!(g.valid, Some(true), "{:?}", g.text);
    assert!(g.text.starts_with("{\"tool_calls\":[{\"name\":\"get_weather\""), "{:?}", g.text);
}

/// Qwen 3 thinks before it answers: under `auto` the answer may open with a `<think>…</think>`
/// block of free text, and a call after it must name an offered tool with valid arguments (before,
/// everything after the thinking passed as free text); `required` and a named tool still call at
/// once. Checked by feeding texts, tokenized by the synthesized qwen3's tokenizer, through the
/// compiled constraint; then on the model: the budget (half of `max_tokens`) forces `</think>`,
/// and a call after it is valid.
#[test]
fn qwen3_thinking_then_a_constrained_call() {
    use edgewise_core::session::StopReason;
    let Some(path) = model("qwen3-tools") else { return };
    let e =
        Engine::load(path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    assert!(e.template().thinks(), "the Qwen 3 template handles <think>");
    let compiler = e.constraint_compiler().unwrap();
    let accepts = |c: &edgewise_core::structured::OutputConstraint, text: &str| -> bool {
        let mut k = compiler.compile(c).unwrap().unwrap();
        let ids = e.tokenizer().encode(text, false).unwrap();
        ids.iter().all(|&id| k.commit(id).is_ok()) && k.is_accepting()
    };
    let think = "<think>\nThe user wants apples, so I should call add_to_cart with qty 2.\n</think>\n\n";
    let call = "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"apple\", \"qty\": 2}}\n</tool_call>";
    let bad_calls = [
        "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"apple\", \"qty\": 99}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"car\", \"qty\": 2}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"delete_account\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\":\"add_to_cart\",\"arguments\":{\"item\":\"apple\",\"qty\":2}}\n</tool_call>",
    ];
    let mut t = tools();
    t.choice = ToolChoice::Auto;
    let c = t.constraint_for_model(ToolFormat::Hermes, Some(512));
    assert!(accepts(&c, &format!("{think}{call}")), "thinking, then a call");
    assert!(accepts(&c, &format!("{think}{call}\n{call}")), "thinking, then two calls");
    assert!(accepts(&c, call), "a call without thinking");
    assert!(accepts(&c, &format!("{think}Sure, two apples are in your cart.")), "thinking, then text");
    assert!(accepts(&c, "Sure, two apples are in your cart."), "text");
    assert!(accepts(&c, think.trim_end()), "thinking alone");
    for bad in bad_calls {
        assert!(!accepts(&c, &format!("{think}{bad}")), "a bad call after thinking passed");
        assert!(!accepts(&c, bad), "a bad call passed");
    }
    assert!(!accepts(&c, "<think>\nno end"), "an unfinished thinking block is not complete");
    assert!(!accepts(&c, &format!("<think>\n1 < 2\n</think>\n\n{call}")), "`<` inside the thinking (documented)");
    // The budget: past it `</think>` is the only way on.
    let short = t.constraint_for_model(ToolFormat::Hermes, Some(8));
    assert!(accepts(&short, &format!("<think>\nOK.\n</think>\n\n{call}")));
    assert!(!accepts(&short, &format!("{think}{call}")), "a thinking block past its budget passed");
    // `required` / a named tool: the call comes at once.
    for choice in [ToolChoice::Required, ToolChoice::Named("add_to_cart".into())] {
        let mut t = tools();
        t.choice = choice.clone();
        let c = t.constraint_for_model(ToolFormat::Hermes, Some(512));
        assert!(accepts(&c, call) && !accepts(&c, &format!("{think}{call}")), "{choice:?}");
    }
    // The old constraint (no thinking) let anything after a thinking block pass as text.
    assert!(accepts(&t.constraint_for(ToolFormat::Hermes), &format!("{think}{}", bad_calls[0])));

    // On the model (random weights; greedy): whatever it opens with, a thinking block ends by its
    // budget (half of max_tokens) and a call is complete and valid.
    let mut s = e.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap();
    s.set_tools(Some(tools())).unwrap();
    let g = s.chat("Add two apples to my cart, please.", &GenerationParams::greedy(400), &mut |_| true).unwrap();
    let (thinking, after) = match g.text.strip_prefix("<think>") {
        Some(rest) => rest.split_once("</think>").unwrap_or_else(|| panic!("unended thinking: {:?}", g.text)),
        None => ("", g.text.as_str()),
    };
    assert!(e.tokenizer().encode(thinking, false).unwrap().len() <= 200 + 1, "{:?}", g.text);
    if after.trim_start().starts_with("<tool_call>") && g.stop_reason != StopReason::MaxTokens {
        assert_eq!(g.valid, Some(true), "{:?}", g.text);
        assert!(!g.tool_calls.is_empty());
    }
    eprintln!("qwen3 under auto: {} thinking bytes, then {:?}…, {} call(s)", thinking.len(), after.chars().take(24).collect::<String>(), g.tool_calls.len());
}
