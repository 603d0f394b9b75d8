//! Tool calling in the model families' own formats, on the synthesized llama / qwen2 / qwen3
//! GGUFs carrying the real Llama 3.2 / Qwen 2.5 / Qwen 3 chat templates
//! (`tests/reference/make_tool_template_synth.py`), and the synthesized qwen35 with the real
//! Qwen 3.5 template (its XML calls). The weights are random, so only the
//! structure is checked: the format is detected, the constrained answer is a call in the family's
//! format (byte for byte what its template prints for such a call), the prompt of the next turn
//! is exactly the template's rendering of the OpenAI-form conversation (tools, the call as
//! `tool_calls`, the result as a `tool` message), and only the new messages are prefilled.

mod common_model;

use std::path::PathBuf;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::{GenerationParams, SessionConfig};
use edgewise_core::structured::tools::{Thinking, ToolChoice, ToolFormat, ToolResult, Tools};
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
    check_engine(e, name, want);
}

fn check_engine(e: Engine, name: &str, want: ToolFormat) {
    let mut s = e.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap();
    assert_eq!(s.tool_format(), want, "{name}");
    let mut t = tools();
    t.choice = ToolChoice::Required;
    s.set_tools(Some(t.clone())).unwrap();
    let user = "Add two apples to my cart, please.";
    // Qwen 3 would think first (`qwen3_*thinking*` test that): here the call comes at once.
    let think_off = e.template().thinks().then_some(false);
    let greedy = |n| GenerationParams { enable_thinking: think_off, ..GenerationParams::greedy(n) };
    let g = s.chat(user, &greedy(400), &mut |_| true).unwrap();
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
        ToolFormat::QwenXml => assert!(
            g.text.starts_with("<tool_call>\n<function=")
                && g.text.ends_with("\n</parameter>\n</function>\n</tool_call>"),
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
    let g2 = s.send_tool_results(&results, &greedy(24), &mut |_| true).unwrap();
    if think_off.is_none() {
        assert_eq!(g2.metrics.prefilled_tokens, g2.metrics.prompt_tokens - cached_before, "{name}");
    } else {
        // Qwen 3's template prints the empty `<think>` block after the generation prompt only,
        // not in the answered turn: the cache departs there and the answer is prefilled again.
        assert!(g2.metrics.prefilled_tokens < g2.metrics.prompt_tokens, "{name}");
    }
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
    let rendered = e
        .template()
        .with_thinking(think_off)
        .render_json(&Value::Array(msgs), t.template_tools().as_ref(), true)
        .unwrap();
    assert_eq!(prompt, rendered, "{name}");
    match want {
        ToolFormat::Hermes | ToolFormat::QwenXml => {
            assert!(prompt.contains("# Tools") && prompt.contains("<tool_response>\n{\"ok\": true"), "{name}")
        }
        _ => assert!(
            prompt.contains("Given the following functions")
                && prompt.contains("<|start_header_id|>ipython<|end_header_id|>"),
            "{name}"
        ),
    }
    // The call, as the template rendered it in the history, reads back as the same calls.
    let (header, end) = match want {
        ToolFormat::Llama3 => ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
        _ => ("<|im_start|>assistant\n", "<|im_end|>"),
    };
    let after_user = prompt.split_once(user).map(|(_, a)| a).unwrap_or_default();
    let answered = after_user.split_once(header).map(|(_, a)| a).unwrap_or_default();
    let answered = answered.split_once(end).map_or(answered, |(a, _)| a);
    let answered = answered.split_once("</think>\n\n").map_or(answered, |(_, a)| a);
    let back: Vec<(String, Value)> =
        t.parse_calls_for(want, answered, 0).into_iter().map(|c| (c.name, c.arguments)).collect();
    assert_eq!(back, calls, "{name}: the rendered call did not read back");
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
    let local =
        LocalEngine::new(e.clone(), SessionConfig { max_context: 2048, ..Default::default() }, greedy(400)).unwrap();
    let mut t = tools();
    t.choice = ToolChoice::Required;
    let out = StructuredRequest { tools: Some(t), ..Default::default() };
    let a = local.generate_structured(&ChatRequest::user(user), &out, &mut |_| true).unwrap();
    assert_eq!(
        (a.answer.text.as_str(), a.tool_calls.len()),
        (g.text.as_str(), g.tool_calls.len()),
        "{name}: LocalEngine"
    );
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
    assert!(
        a2.answer.prompt_tokens.abs_diff(encoded.len()) <= slack,
        "{name}: {} vs {}",
        a2.answer.prompt_tokens,
        encoded.len()
    );
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

fn load_qwen3() -> Option<Engine> {
    let path = model("qwen3-tools")?;
    Some(
        Engine::load(path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap(),
    )
}

/// Whether the compiled constraint `c` accepts `text` (tokenized by `e`'s tokenizer) as a whole
/// answer.
fn accepts(e: &Engine, c: &edgewise_core::structured::OutputConstraint, text: &str) -> bool {
    let mut k = e.constraint_compiler().unwrap().compile(c).unwrap().unwrap();
    let ids = e.tokenizer().encode(text, false).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        if let Err(err) = k.commit(id) {
            if std::env::var_os("DEBUG_ACCEPT").is_some() {
                eprintln!("rejected at token {i} {:?}: {err}", e.tokenizer().decode(&ids[..=i], false).unwrap());
            }
            return false;
        }
    }
    k.is_accepting()
}

const THINK: &str = "<think>\nThe user wants apples, so I should call add_to_cart with qty 2.\n</think>\n\n";
const CALL: &str =
    "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"apple\", \"qty\": 2}}\n</tool_call>";
const BAD_CALLS: [&str; 4] = [
    "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"apple\", \"qty\": 99}}\n</tool_call>",
    "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"car\", \"qty\": 2}}\n</tool_call>",
    "<tool_call>\n{\"name\": \"delete_account\", \"arguments\": {}}\n</tool_call>",
    "<tool_call>\n{\"name\":\"add_to_cart\",\"arguments\":{\"item\":\"apple\",\"qty\":2}}\n</tool_call>",
];
/// Thinking that holds `<`: a comparison, the start of the closing tag, a drafted call, a
/// nested `<think>`.
const LT_THINK: &str = "<think>\nIs 1 < 2? Yes. </thin is not the end, nor is </think or <think>. I could write <tool_call>\n{\"name\": \"delete_account\"}\n</tool_call> but will not.\n</think>\n\n";

/// Qwen 3 thinks before it answers: under `auto` the answer may open with a `<think>…</think>`
/// block of free text, and a call after it must name an offered tool with valid arguments (before,
/// everything after the thinking passed as free text). Checked by feeding texts, tokenized by the
/// synthesized qwen3's tokenizer, through the compiled constraint; then on the model: the budget
/// (half of `max_tokens`) forces `</think>`, and a call after it is valid.
#[test]
fn qwen3_thinking_then_a_constrained_call() {
    use edgewise_core::session::StopReason;
    let Some(e) = load_qwen3() else { return };
    assert!(e.template().thinks(), "the Qwen 3 template handles <think>");
    let mut t = tools();
    t.choice = ToolChoice::Auto;
    let c = t.constraint_for_model(ToolFormat::Hermes, Thinking::May { budget: 512 });
    assert!(accepts(&e, &c, &format!("{THINK}{CALL}")), "thinking, then a call");
    assert!(accepts(&e, &c, &format!("{THINK}{CALL}\n{CALL}")), "thinking, then two calls");
    assert!(accepts(&e, &c, CALL), "a call without thinking");
    assert!(accepts(&e, &c, &format!("{THINK}Sure, two apples are in your cart.")), "thinking, then text");
    assert!(accepts(&e, &c, "Sure, two apples are in your cart."), "text");
    assert!(accepts(&e, &c, THINK.trim_end()), "thinking alone");
    for bad in BAD_CALLS {
        assert!(!accepts(&e, &c, &format!("{THINK}{bad}")), "a bad call after thinking passed");
        assert!(!accepts(&e, &c, &format!("{LT_THINK}{bad}")), "a bad call after thinking with `<` passed");
        assert!(!accepts(&e, &c, bad), "a bad call passed");
    }
    assert!(!accepts(&e, &c, "<think>\nno end"), "an unfinished thinking block is not complete");
    assert!(accepts(&e, &c, &format!("{LT_THINK}{CALL}")), "`<` inside the thinking");
    // The budget: past it `</think>` is the only way on.
    let short = t.constraint_for_model(ToolFormat::Hermes, Thinking::May { budget: 8 });
    assert!(accepts(&e, &short, &format!("<think>\nOK.\n</think>\n\n{CALL}")));
    assert!(!accepts(&e, &short, &format!("{THINK}{CALL}")), "a thinking block past its budget passed");
    // The old constraint (no thinking) let anything after a thinking block pass as text.
    assert!(accepts(&e, &t.constraint_for(ToolFormat::Hermes), &format!("{THINK}{}", BAD_CALLS[0])));

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
    eprintln!(
        "qwen3 under auto: {} thinking bytes, then {:?}…, {} call(s)",
        thinking.len(),
        after.chars().take(24).collect::<String>(),
        g.tool_calls.len()
    );
}

/// `required` and a named tool let Qwen 3 think first, then force the call (before, the answer
/// had to be the call at once: `start: calls`); the thinking may hold `<` (before, it could not:
/// `[^<]+`); with thinking off (the prompt ends with the template's empty block) the answer may
/// not think; where the prompt opened the block (Qwen 3.5, thinking-only templates) the answer
/// starts in it and must close it before the call.
#[test]
fn qwen3_thinking_then_a_forced_call() {
    let Some(e) = load_qwen3() else { return };
    for choice in [ToolChoice::Required, ToolChoice::Named("add_to_cart".into())] {
        let mut t = tools();
        t.choice = choice.clone();
        let c = t.constraint_for_model(ToolFormat::Hermes, Thinking::May { budget: 512 });
        assert!(accepts(&e, &c, CALL), "{choice:?}: a call at once");
        assert!(accepts(&e, &c, &format!("{THINK}{CALL}")), "{choice:?}: thinking, then the call");
        assert!(accepts(&e, &c, &format!("{LT_THINK}{CALL}")), "{choice:?}: `<` inside the thinking");
        assert!(accepts(&e, &c, &format!("<think>\n\n</think>\n\n{CALL}")), "{choice:?}: an empty thinking block");
        assert!(!accepts(&e, &c, THINK.trim_end()), "{choice:?}: thinking without the call");
        assert!(!accepts(&e, &c, &format!("{THINK}Sure.")), "{choice:?}: thinking, then text");
        assert!(
            !accepts(&e, &c, &format!("<think>\nA</think>B</think>\n\n{CALL}")),
            "{choice:?}: text after `</think>`"
        );
        assert!(!accepts(&e, &c, &format!("<think>\nno end {CALL}")), "{choice:?}: unfinished thinking");
        for bad in BAD_CALLS {
            assert!(!accepts(&e, &c, &format!("{THINK}{bad}")), "{choice:?}: a bad call after thinking passed");
            assert!(!accepts(&e, &c, &format!("{LT_THINK}{bad}")), "{choice:?}: a bad call after `<` thinking passed");
        }
        // The budget holds with `<` in the text too (16 tokens: the synthesized vocabulary
        // spells `<think>` and `</think>` in three pieces each, which count).
        let short = t.constraint_for_model(ToolFormat::Hermes, Thinking::May { budget: 16 });
        assert!(accepts(&e, &short, &format!("<think>\n1 < 2.\n</think>\n\n{CALL}")), "{choice:?}");
        assert!(!accepts(&e, &short, &format!("{LT_THINK}{CALL}")), "{choice:?}: past the budget");
        // Thinking off: the call at once, no block of any kind.
        let off = t.constraint_for_model(ToolFormat::Hermes, Thinking::Off);
        assert!(accepts(&e, &off, CALL), "{choice:?}");
        for bad in [format!("{THINK}{CALL}"), format!("<think>\n\n</think>\n\n{CALL}")] {
            assert!(!accepts(&e, &off, &bad), "{choice:?}: thinking while it is off");
        }
        // The prompt opened the block: the answer is thinking, `</think>`, the call.
        let open = t.constraint_for_model(ToolFormat::Hermes, Thinking::Open { budget: 512 });
        let inner = LT_THINK.strip_prefix("<think>").unwrap();
        assert!(accepts(&e, &open, &format!("{inner}{CALL}")), "{choice:?}: open thinking, then the call");
        assert!(!accepts(&e, &open, CALL), "{choice:?}: an open block must be closed");
        assert!(!accepts(&e, &open, &format!("{inner}{}", BAD_CALLS[1])), "{choice:?}");
    }
    // `auto` with thinking off: text or a call, never a thinking block.
    let off = tools().constraint_for_model(ToolFormat::Hermes, Thinking::Off);
    assert!(accepts(&e, &off, "Sure.") && accepts(&e, &off, CALL));
    assert!(!accepts(&e, &off, &format!("{THINK}{CALL}")), "auto, thinking off: thinking passed");
}

/// On the model (random weights, sampled with seeds so that some answers think and some do
/// not) under `required`: every answer is complete, parses and validates; the thinking ends
/// within its budget; the text after it is exactly the calls as the template prints them (so
/// nothing of the thinking reached the arguments). Each call's arguments also pass the
/// independent check used for cloud calls.
#[test]
fn qwen3_required_answers_think_then_call() {
    use edgewise_core::sampling::SamplingParams;
    let Some(e) = load_qwen3() else { return };
    let mut t = tools();
    t.choice = ToolChoice::Required;
    use edgewise_core::session::StopReason;
    let (mut thought, mut direct, mut cut) = (0, 0, 0);
    for seed in 0..12u64 {
        let mut s = e.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap();
        s.set_tools(Some(t.clone())).unwrap();
        let params = GenerationParams {
            sampling: SamplingParams { temperature: 1.0, seed, ..SamplingParams::default() },
            max_tokens: 400,
            ..Default::default()
        };
        let g = s.chat("Add two apples to my cart, please.", &params, &mut |_| true).unwrap();
        if g.stop_reason == StopReason::MaxTokens {
            // Thinking to the budget, then up to 4 calls: a cut answer says so, never valid.
            assert_eq!((g.valid, g.tool_calls.len()), (Some(false), 0), "seed {seed}");
            cut += 1;
            continue;
        }
        assert_eq!(g.valid, Some(true), "seed {seed}: {:?}", g.text);
        assert!(!g.tool_calls.is_empty(), "seed {seed}: {:?}", g.text);
        let (thinking, after) = Thinking::May { budget: 200 }.split(&g.text);
        if thinking.is_some() {
            thought += 1;
            // Sampled tokens up to the end of `</think>`: `<think>`, at most 200 of thinking,
            // and the closing tag (forced after a cut, in up to 8 pieces).
            let closed = (1..=g.token_ids.len())
                .find(|&k| e.tokenizer().decode(&g.token_ids[..k], false).unwrap().contains("</think>"))
                .unwrap_or(usize::MAX);
            assert!(closed <= 3 + 200 + 8, "seed {seed}: {closed} tokens to the end of the thinking");
        } else {
            direct += 1;
        }
        let calls: Vec<(String, Value)> = g.tool_calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
        assert_eq!(after, Tools::call_text(ToolFormat::Hermes, &calls), "seed {seed}");
        for c in &g.tool_calls {
            t.check_call(c).unwrap_or_else(|err| panic!("seed {seed}: {err}"));
        }
    }
    eprintln!(
        "qwen3 under required: {thought} answers thought first, {direct} called at once, {cut} cut by max_tokens"
    );
    assert!(thought > 0, "no answer thought: the test did not reach the thinking path");
}

/// `enable_thinking = false` (GenerationParams, ChatRequest) reaches the Qwen 3 template: the
/// prompt ends with its empty `<think>` block, and the answer neither thinks nor, under
/// `required`, does anything but call. Unset, the prompt ends at the assistant header.
#[test]
fn qwen3_enable_thinking_false_reaches_the_template() {
    use edgewise_core::router::{ChatRequest, LocalEngine, LocalModel, StructuredRequest};
    let Some(e) = load_qwen3() else { return };
    let mut t = tools();
    t.choice = ToolChoice::Required;
    let user = "Add two apples to my cart, please.";
    for (enable, tail) in
        [(None, "<|im_start|>assistant\n"), (Some(false), "<|im_start|>assistant\n<think>\n\n</think>\n\n")]
    {
        let mut s = e.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap();
        s.set_tools(Some(t.clone())).unwrap();
        let params = GenerationParams { enable_thinking: enable, ..GenerationParams::greedy(400) };
        let g = s.chat(user, &params, &mut |_| true).unwrap();
        let prompt = e.tokenizer().decode(&s.cached_token_ids()[..g.metrics.prompt_tokens], false).unwrap();
        assert!(prompt.ends_with(tail), "{enable:?}: {:?}", &prompt[prompt.len().saturating_sub(40)..]);
        assert_eq!(g.valid, Some(true), "{enable:?}: {:?}", g.text);
        if enable == Some(false) {
            assert!(g.text.starts_with("<tool_call>\n"), "thinking off, yet: {:?}", g.text);
        }
        // The router's local model (and `edgewise serve`) takes it from the request.
        let local = LocalEngine::new(
            e.clone(),
            SessionConfig { max_context: 2048, ..Default::default() },
            GenerationParams::greedy(400),
        )
        .unwrap();
        let req = ChatRequest { enable_thinking: enable, ..ChatRequest::user(user) };
        let a = local
            .generate_structured(&req, &StructuredRequest { tools: Some(t.clone()), ..Default::default() }, &mut |_| {
                true
            })
            .unwrap();
        assert_eq!(
            (a.answer.text.as_str(), a.tool_calls.len()),
            (g.text.as_str(), g.tool_calls.len()),
            "{enable:?}: LocalEngine"
        );
        assert_eq!(a.answer.prompt_tokens, g.metrics.prompt_tokens, "{enable:?}");
    }
}

/// `edgewise run --no-think` reaches the template: the prompt is longer by exactly the empty
/// `<think>` block the Qwen 3 template adds for `enable_thinking=false`; with `--raw` (no
/// template) the flag is an error; `edgewise chat --no-think` runs.
#[test]
fn no_think_flag_reaches_the_template_from_the_cli() {
    let Some(path) = model("qwen3-tools") else { return };
    let Some(e) = load_qwen3() else { return };
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgewise"))
            .args([
                "run",
                "--model",
                path.to_str().unwrap(),
                "--backend",
                "cpu",
                "--threads",
                "2",
                "--temperature",
                "0",
                "--max-tokens",
                "1",
                "--format",
                "json",
            ])
            .args(extra)
            .arg("Add two apples to my cart, please.")
            .output()
            .unwrap();
        out
    };
    let prompt_tokens = |extra: &[&str]| {
        let out = run(extra);
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line: Value =
            serde_json::from_slice(out.stdout.split(|&b| b == b'\n').find(|l| l.starts_with(b"{")).unwrap()).unwrap();
        line["metrics"]["prompt_tokens"].as_u64().unwrap() as usize
    };
    let block = e.tokenizer().encode("<think>\n\n</think>\n\n", false).unwrap().len();
    assert!(block > 0);
    assert_eq!(prompt_tokens(&["--no-think"]), prompt_tokens(&[]) + block);
    let raw = run(&["--raw", "--no-think"]);
    assert!(
        !raw.status.success() && String::from_utf8_lossy(&raw.stderr).contains("--no-think needs the chat template"),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let mut chat = std::process::Command::new(env!("CARGO_BIN_EXE_edgewise"))
        .args([
            "chat",
            "--model",
            path.to_str().unwrap(),
            "--backend",
            "cpu",
            "--threads",
            "2",
            "--temperature",
            "0",
            "--max-tokens",
            "2",
            "--no-think",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        chat.stdin.take().unwrap().write_all(b"Hello\n/exit\n").unwrap();
    }
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Qwen 3.5: calls in XML (`<function=NAME>` with one `<parameter=ARG>` per argument).

/// The synthesized qwen35 (the real Qwen 3.5 architecture, random weights;
/// `tests/reference/make_qwen35_goldens.py synth`) with the real Qwen 3.5 chat template
/// (`tests/golden/chat_templates/qwen3.5.jinja`) in place of its vocabulary file's plain ChatML
/// one: a temporary copy, removed once loaded.
fn load_qwen35(tag: &str) -> Option<Engine> {
    let path = common_model::synth_model("qwen35", "tests/reference/make_qwen35_goldens.py synth")?;
    let out = common_model::with_chat_template(&path, "chat_templates/qwen3.5.jinja", &format!("qwen35-tools-{tag}"));
    let e =
        Engine::load(&out, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false });
    let _ = std::fs::remove_file(&out);
    Some(e.unwrap())
}

/// Tools with a free string (bounded, so a sampled answer ends), an enum and a bounded integer.
fn xml_tools() -> Tools {
    Tools::from_json(
        &json!([
            {"type": "function", "function": {"name": "add_to_cart", "description": "Adds an item to the shopping cart.",
                "parameters": {"type": "object", "properties": {"item": {"enum": ["apple", "pear", "milk"]}, "qty": {"type": "integer", "minimum": 1, "maximum": 20},
                    "note": {"type": "string", "maxLength": 24}}, "required": ["item", "qty"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Köln"]}}, "required": ["city"], "additionalProperties": false}}}
        ])
        .to_string(),
    )
    .unwrap()
}

const XML_CALL: &str = "<tool_call>\n<function=add_to_cart>\n<parameter=item>\napple\n</parameter>\n<parameter=qty>\n2\n</parameter>\n</function>\n</tool_call>";
const XML_CALL_NOTE: &str = "<tool_call>\n<function=add_to_cart>\n<parameter=item>\npear\n</parameter>\n<parameter=qty>\n12\n</parameter>\n<parameter=note>\ngift wrap, <please>\n</parameter>\n</function>\n</tool_call>";
const XML_CALL_CITY: &str =
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nKöln\n</parameter>\n</function>\n</tool_call>";
/// (what is wrong, the call).
const XML_BAD_CALLS: [(&str, &str); 8] = [
    ("a tool that is not offered", "<tool_call>\n<function=delete_account>\n<parameter=item>\napple\n</parameter>\n</function>\n</tool_call>"),
    ("an unknown parameter", "<tool_call>\n<function=add_to_cart>\n<parameter=item>\napple\n</parameter>\n<parameter=qty>\n2\n</parameter>\n<parameter=colour>\nred\n</parameter>\n</function>\n</tool_call>"),
    ("a required parameter missing", "<tool_call>\n<function=add_to_cart>\n<parameter=item>\napple\n</parameter>\n</function>\n</tool_call>"),
    ("a string holding </parameter>", "<tool_call>\n<function=add_to_cart>\n<parameter=item>\napple\n</parameter>\n<parameter=qty>\n2\n</parameter>\n<parameter=note>\na</parameter>b\n</parameter>\n</function>\n</tool_call>"),
    ("an integer that is not JSON", "<tool_call>\n<function=add_to_cart>\n<parameter=item>\napple\n</parameter>\n<parameter=qty>\ntwo\n</parameter>\n</function>\n</tool_call>"),
    ("an integer out of bounds", "<tool_call>\n<function=add_to_cart>\n<parameter=item>\napple\n</parameter>\n<parameter=qty>\n99\n</parameter>\n</function>\n</tool_call>"),
    ("a value not in the enum", "<tool_call>\n<function=add_to_cart>\n<parameter=item>\ncar\n</parameter>\n<parameter=qty>\n2\n</parameter>\n</function>\n</tool_call>"),
    ("the JSON (Hermes) form", "<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {\"item\": \"apple\", \"qty\": 2}}\n</tool_call>"),
];

/// Qwen 3.5's template is detected as the XML format. Before, it was `Hermes` (the template
/// also names `tool_call.arguments`), and calls were forced into JSON the model was not
/// trained on.
#[test]
fn qwen35_template_uses_the_xml_format() {
    let Some(e) = load_qwen35("format") else { return };
    assert_eq!(e.template().tool_format(), ToolFormat::QwenXml);
    assert!(e.template().thinks());
    let s = e.new_session(SessionConfig { max_context: 256, ..Default::default() }).unwrap();
    assert_eq!(s.tool_format(), ToolFormat::QwenXml);
}

/// The compiled constraint (Qwen 3.5's tokenizer) accepts well-formed XML calls, after an open
/// thinking block (the prompt ends with `<think>\n`), with thinking off, or none; it rejects a
/// tool that is not offered, an unknown parameter, a missing required one, a string holding
/// `</parameter>`, a non-JSON or out-of-bounds integer, a value outside the enum and the JSON
/// form the old detection forced.
#[test]
fn qwen35_xml_constraint_accepts_calls_and_rejects_bad_ones() {
    let Some(e) = load_qwen35("constraint") else { return };
    const OPEN: &str = "The user wants apples: add_to_cart, qty 2. I could write <tool_call> now.\n</think>\n\n";
    for choice in [ToolChoice::Required, ToolChoice::Named("add_to_cart".into()), ToolChoice::Auto] {
        let mut t = xml_tools();
        t.choice = choice.clone();
        for (thinking, pre) in [
            (Thinking::Open { budget: 512 }, OPEN),
            (Thinking::Off, ""),
            (Thinking::No, ""),
            (Thinking::May { budget: 512 }, "<think>\nhm\n</think>\n\n"),
        ] {
            let c = t.constraint_for_model(ToolFormat::QwenXml, thinking);
            let id = format!("{choice:?} {thinking:?}");
            assert!(accepts(&e, &c, &format!("{pre}{XML_CALL}")), "{id}: a call");
            assert!(accepts(&e, &c, &format!("{pre}{XML_CALL_NOTE}")), "{id}: a call with a free string");
            assert!(accepts(&e, &c, &format!("{pre}{XML_CALL}\n{XML_CALL_NOTE}")), "{id}: two calls");
            assert_eq!(
                accepts(&e, &c, &format!("{pre}{XML_CALL_CITY}")),
                choice != ToolChoice::Named("add_to_cart".into()),
                "{id}: the other tool"
            );
            for (what, bad) in XML_BAD_CALLS {
                assert!(!accepts(&e, &c, &format!("{pre}{bad}")), "{id}: {what} passed");
            }
            assert!(!accepts(&e, &c, &format!("{pre}{XML_CALL}\nSure.")), "{id}: text after the call");
            assert_eq!(accepts(&e, &c, &format!("{pre}Sure, done.")), choice == ToolChoice::Auto, "{id}: text");
        }
        let open = t.constraint_for_model(ToolFormat::QwenXml, Thinking::Open { budget: 512 });
        assert!(!accepts(&e, &open, XML_CALL), "{choice:?}: the open thinking block must be closed");
    }
    // The old detection's constraint (Hermes) refused the model's own format.
    let mut t = xml_tools();
    t.choice = ToolChoice::Required;
    assert!(!accepts(&e, &t.constraint_for_model(ToolFormat::Hermes, Thinking::Off), XML_CALL));
}

/// On the model (random weights, sampled with seeds) under `required` and a named tool (whose
/// free string is made required, so answers write one): every answer that is not
/// cut by `max_tokens` thinks (the prompt opened the block), closes it within its budget, and
/// then is exactly XML calls as the template prints them, which parse and validate (also by
/// the independent check used for cloud calls).
#[test]
fn qwen35_required_answers_are_xml_calls_that_validate() {
    use edgewise_core::sampling::SamplingParams;
    use edgewise_core::session::StopReason;
    let Some(e) = load_qwen35("sampled") else { return };
    let mut t = xml_tools();
    t.choice = ToolChoice::Required;
    // The free string required, so that sampled answers write one.
    t.tools[0].parameters["required"] = json!(["item", "qty", "note"]);
    let (mut ok, mut cut, mut with_note) = (0, 0, 0);
    for seed in 0..8u64 {
        // Odd seeds name the tool with the free string.
        let mut t = t.clone();
        if seed % 2 == 1 {
            t.choice = ToolChoice::Named("add_to_cart".into());
        }
        let mut s = e.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap();
        s.set_tools(Some(t.clone())).unwrap();
        let params = GenerationParams {
            sampling: SamplingParams { temperature: 1.0, seed, ..SamplingParams::default() },
            max_tokens: 240,
            ..Default::default()
        };
        let g = s.chat("Add two apples to my cart, please.", &params, &mut |_| true).unwrap();
        if g.stop_reason == StopReason::MaxTokens {
            assert_eq!((g.valid, g.tool_calls.len()), (Some(false), 0), "seed {seed}");
            cut += 1;
            continue;
        }
        assert_eq!(g.valid, Some(true), "seed {seed}: {:?}", g.text);
        assert!(!g.tool_calls.is_empty(), "seed {seed}: {:?}", g.text);
        let (thinking, after) = Thinking::Open { budget: 120 }.split(&g.text);
        assert!(thinking.is_some(), "seed {seed}: the open thinking block was not closed: {:?}", g.text);
        let calls: Vec<(String, Value)> = g.tool_calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
        assert_eq!(after, Tools::call_text(ToolFormat::QwenXml, &calls), "seed {seed}");
        assert!(after.starts_with("<tool_call>\n<function="), "seed {seed}: {after:?}");
        for c in &g.tool_calls {
            t.check_call(c).unwrap_or_else(|err| panic!("seed {seed}: {err}"));
            with_note += usize::from(c.arguments.get("note").is_some());
        }
        ok += 1;
    }
    eprintln!("qwen35 under required: {ok} answers with valid XML calls ({with_note} calls with a note), {cut} cut by max_tokens");
    assert!(ok >= 4 && with_note > 0, "only {ok} of 8 answers finished, {with_note} with a free string");
}

/// A call and a result round on Qwen 3.5 (as for the other families): the call is the
/// template's XML, the next prompt is exactly the template's rendering of the OpenAI-form
/// conversation (the call as structured `tool_calls`, the result as a `tool` message), and the
/// call rendered in that history reads back as the same call.
#[test]
fn qwen35_template_tool_calls_and_results() {
    let Some(e) = load_qwen35("history") else { return };
    check_engine(e, "qwen35", ToolFormat::QwenXml);
}

/// Argument values by schema in the XML form: a string `pattern` (anchored or searched),
/// `minLength`/`maxLength` and `const` on raw text; an object, an array and a number as JSON
/// with the template's `tojson` spacing; a boolean as Python's `True`/`False` (the template's
/// `| string`); strings-or-null and unions of string schemas as raw text (`None` for null); a
/// schema without constraints takes any text. Parameters in any order, each at most once, the
/// required ones present.
#[test]
fn qwen35_xml_values_follow_their_schemas() {
    let Some(e) = load_qwen35("values") else { return };
    let t = Tools::from_json(
        &json!([{"name": "file", "parameters": {"type": "object", "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d+$"},
            "tag": {"type": "string", "pattern": "ok", "minLength": 3},
            "kind": {"const": "ticket"},
            "opts": {"type": "object", "properties": {"gift": {"type": "boolean"}, "n": {"type": "array", "items": {"type": "integer"}}}, "required": ["gift"], "additionalProperties": false},
            "urgent": {"type": "boolean"},
            "price": {"type": "number", "maximum": 10},
            "memo": {"description": "anything"},
            "sym": {"enum": ["a.b*", "x/y", "c-d", "e&f", "g~h", "#1 (2)", "[k]{3}|^$", "back\\slash", "ü \"q\"", "two\nlines"]},
            "city": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]},
            "zone": {"anyOf": [{"enum": ["north", "south"]}, {"type": "string", "pattern": "^Z\\d$"}]},
            "ref": {"type": ["string", "null"], "minLength": 2},
            "n": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        }, "required": ["code", "kind"]}}])
        .to_string(),
    )
    .unwrap();
    let mut t = t;
    t.choice = ToolChoice::Required;
    let c = t.constraint_for_model(ToolFormat::QwenXml, Thinking::Off);
    let call = |params: &[(&str, &str)]| {
        let mut s = String::from("<tool_call>\n<function=file>\n");
        for (k, v) in params {
            s.push_str(&format!("<parameter={k}>\n{v}\n</parameter>\n"));
        }
        s + "</function>\n</tool_call>"
    };
    let good = call(&[
        ("code", "ABC-12"),
        ("tag", "look"),
        ("kind", "ticket"),
        ("opts", "{\"gift\": true, \"n\": [1, 2]}"),
        ("urgent", "False"),
        ("price", "9.5"),
        ("memo", "any <text>\nat all"),
    ]);
    assert!(accepts(&e, &c, &good), "all values");
    assert!(accepts(&e, &c, &call(&[("code", "XYZ-7"), ("kind", "ticket")])), "the required ones");
    let parsed = t.parse_calls_for(ToolFormat::QwenXml, &good, 0);
    assert_eq!(
        parsed[0].arguments,
        json!({"code": "ABC-12", "tag": "look", "kind": "ticket", "opts": {"gift": true, "n": [1, 2]}, "urgent": false, "price": 9.5, "memo": "any <text>\nat all"})
    );
    t.check_call(&parsed[0]).unwrap();
    // The template prints a boolean as Python's `str` (`True`), and the call text is that.
    let calls = vec![("file".to_string(), parsed[0].arguments.clone())];
    assert_eq!(Tools::call_text(ToolFormat::QwenXml, &calls), good);
    // Parameters in any order (the model's, not the schema's), each at most once, the
    // required ones present: a tool of up to 8 parameters (this one has 12: the schema's order).
    let mut o = Tools::from_json(
        &json!([{"name": "order", "parameters": {"type": "object", "properties": {
            "a": {"type": "string", "maxLength": 6}, "b": {"type": "integer"}, "c": {"type": "boolean"},
            "d": {"anyOf": [{"type": "string"}, {"type": "null"}]}
        }, "required": ["a", "c"]}}])
        .to_string(),
    )
    .unwrap();
    o.choice = ToolChoice::Required;
    let oc = o.constraint_for_model(ToolFormat::QwenXml, Thinking::Off);
    let ocall = |params: &[(&str, &str)]| call(params).replace("<function=file>", "<function=order>");
    for order in [
        &[("c", "True"), ("a", "x")][..],
        &[("d", "None"), ("b", "3"), ("c", "False"), ("a", "y")],
        &[("a", "x"), ("c", "True")],
        &[("b", "1"), ("a", "x"), ("d", "q"), ("c", "True")],
    ] {
        let text = ocall(order);
        assert!(accepts(&e, &oc, &text), "{order:?}");
        let got = &o.parse_calls_for(ToolFormat::QwenXml, &text, 0)[0];
        o.check_call(got).unwrap();
        let keys: Vec<&str> = got.arguments.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, order.iter().map(|p| p.0).collect::<Vec<_>>(), "the model's order is kept");
        assert_eq!(Tools::call_text(ToolFormat::QwenXml, &[("order".to_string(), got.arguments.clone())]), text);
    }
    for (what, order) in [
        ("a required one missing", &[("a", "x")][..]),
        ("both required missing", &[("b", "1"), ("d", "q")]),
        ("a parameter twice", &[("c", "True"), ("a", "x"), ("c", "False")]),
        ("a parameter twice, apart", &[("b", "1"), ("a", "x"), ("c", "True"), ("b", "2")]),
        ("an unknown one", &[("a", "x"), ("c", "True"), ("e", "1")]),
    ] {
        assert!(!accepts(&e, &oc, &ocall(order)), "{what} passed");
    }
    // Strings or null, and unions of string schemas: raw text (`None` for null), not JSON.
    for (arg, raw, want) in [
        ("city", "Oslo", json!("Oslo")),
        ("city", "None", Value::Null),
        ("city", "", json!("")),
        ("zone", "north", json!("north")),
        ("zone", "Z7", json!("Z7")),
        ("ref", "AB", json!("AB")),
        ("ref", "None", Value::Null),
    ] {
        let text = call(&[("code", "ABC-1"), ("kind", "ticket"), (arg, raw)]);
        assert!(accepts(&e, &c, &text), "{arg} {raw:?}");
        let got = &t.parse_calls_for(ToolFormat::QwenXml, &text, 0)[0];
        assert_eq!(got.arguments[arg], want, "{arg} {raw:?}");
        t.check_call(got).unwrap();
        assert_eq!(Tools::call_text(ToolFormat::QwenXml, &[("file".to_string(), got.arguments.clone())]), text);
    }
    // An integer-or-string union stays JSON (`12` would read back either way).
    assert!(accepts(&e, &c, &call(&[("code", "ABC-1"), ("kind", "ticket"), ("n", "\"x\"")])), "a JSON string");
    assert!(accepts(&e, &c, &call(&[("code", "ABC-1"), ("kind", "ticket"), ("n", "12")])), "a JSON integer");
    // Enum strings with regex and Lark metacharacters are matched literally.
    for sym in ["a.b*", "x/y", "c-d", "e&f", "g~h", "#1 (2)", "[k]{3}|^$", "back\\slash", "ü \"q\"", "two\nlines"] {
        let text = call(&[("code", "ABC-1"), ("kind", "ticket"), ("sym", sym)]);
        assert!(accepts(&e, &c, &text), "enum {sym:?}");
        assert_eq!(t.parse_calls_for(ToolFormat::QwenXml, &text, 0)[0].arguments["sym"], json!(sym));
    }
    for sym in ["a.bb", "aXb*", "x/", "kkk", "back\\\\slash", ""] {
        assert!(!accepts(&e, &c, &call(&[("code", "ABC-1"), ("kind", "ticket"), ("sym", sym)])), "enum {sym:?} passed");
    }
    for (what, bad) in [
        ("a code against its anchored pattern", call(&[("code", "abc-12"), ("kind", "ticket")])),
        ("a code with more after the anchored end", call(&[("code", "ABC-12x"), ("kind", "ticket")])),
        ("a tag without its searched pattern", call(&[("code", "ABC-1"), ("tag", "nope"), ("kind", "ticket")])),
        ("a tag under minLength", call(&[("code", "ABC-1"), ("tag", "ok"), ("kind", "ticket")])),
        ("another const", call(&[("code", "ABC-1"), ("kind", "bug")])),
        (
            "JSON without the template's spacing",
            call(&[("code", "ABC-1"), ("kind", "ticket"), ("opts", "{\"gift\":true}")]),
        ),
        ("an object missing its required key", call(&[("code", "ABC-1"), ("kind", "ticket"), ("opts", "{}")])),
        ("JSON's true (the template prints True)", call(&[("code", "ABC-1"), ("kind", "ticket"), ("urgent", "true")])),
        ("a number over its maximum", call(&[("code", "ABC-1"), ("kind", "ticket"), ("price", "12")])),
        (
            "parameters out of the schema's order (more than 8 parameters)",
            call(&[("kind", "ticket"), ("code", "ABC-1")]),
        ),
        // As JSON this was the 8-character string; as raw text it is 10 characters.
        ("a string-or-null quoted as JSON", call(&[("code", "ABC-1"), ("kind", "ticket"), ("city", "\"Bergen12\"")])),
        ("a string-or-null over maxLength", call(&[("code", "ABC-1"), ("kind", "ticket"), ("city", "Trondheim")])),
        ("a union of strings outside every branch", call(&[("code", "ABC-1"), ("kind", "ticket"), ("zone", "west")])),
        ("a string-or-null under minLength", call(&[("code", "ABC-1"), ("kind", "ticket"), ("ref", "A")])),
    ] {
        assert!(!accepts(&e, &c, &bad), "{what} passed");
    }
}

/// Why the session's and the router's answers once differed on Qwen 3.5 (issue 19): the same
/// prompt ids, prefilled in different passes — the session cuts a pass where the next turn
/// departs (token 377 of 383), the `LocalEngine` used not to. The two splits are replayed with
/// the session's answer teacher-forced; they agree to rounding (the DeltaNet chunk boundaries
/// move, and int8 activation rounding in the Q8_0 products amplifies that), so where their
/// constrained greedy picks part, the masked top-2 gap must be a near-tie (< 0.25 logits, the
/// shared rule) in both. With the blocked chunk kernel they part at answer token 130 (gaps
/// 0.0047 and 0.0006); before it they did not part, the smallest gap on the way 0.034. Run with
/// `--ignored qwen35_prefill_splits_part_only_at_a_near_tie --nocapture`.
#[test]
#[ignore = "a diagnosis, printed"]
fn qwen35_prefill_splits_part_only_at_a_near_tie() {
    use edgewise_core::router::{ChatRequest, LocalEngine, LocalModel, StructuredRequest};
    use edgewise_core::tokenizer::ChatMessage as Msg;
    let Some(e) = load_qwen35("diag") else { return };
    let cfg = SessionConfig { max_context: 2048, ..Default::default() };
    let mut s = e.new_session(cfg.clone()).unwrap();
    let mut t = tools();
    t.choice = ToolChoice::Required;
    s.set_tools(Some(t.clone())).unwrap();
    let user = "Add two apples to my cart, please.";
    let think_off = e.template().thinks().then_some(false);
    let greedy = |n| GenerationParams { enable_thinking: think_off, ..GenerationParams::greedy(n) };
    let g = s.chat(user, &greedy(400), &mut |_| true).unwrap();
    let prompt = s.cached_token_ids()[..g.metrics.prompt_tokens].to_vec();
    let local = LocalEngine::new(e.clone(), cfg.clone(), greedy(400)).unwrap();
    let out = StructuredRequest { tools: Some(t.clone()), ..Default::default() };
    let a = local.generate_structured(&ChatRequest::user(user), &out, &mut |_| true).unwrap();
    eprintln!(
        "calls: session {}, local {}; prompt tokens {} vs {}",
        g.tool_calls.len(),
        a.tool_calls.len(),
        g.metrics.prompt_tokens,
        a.answer.prompt_tokens
    );
    let tpl = e.template().with_thinking(think_off);
    let tt = t.template_tools();
    let msgs = |next: bool| {
        let mut m = vec![Msg { role: Role::User, content: user.into() }];
        if next {
            m.push(Msg { role: Role::Assistant, content: "x".into() });
            m.push(Msg { role: Role::User, content: "y".into() });
        }
        m
    };
    let ids_local = tpl.encode_known(e.tokenizer(), &msgs(false), tt.as_ref(), true, &[]).unwrap();
    let probe = tpl.encode_known(e.tokenizer(), &msgs(true), tt.as_ref(), true, &[]).unwrap();
    let dep = prompt.iter().zip(&probe).take_while(|(a, b)| a == b).count();
    eprintln!(
        "prompt ids equal to the LocalEngine's encoding: {}; next turn departs at {dep} of {}",
        ids_local == prompt,
        prompt.len()
    );
    assert_eq!(ids_local, prompt, "the LocalEngine encodes the request differently");
    let gen = &g.token_ids;
    eprintln!("texts equal: {}", a.answer.text == g.text);
    // The session's prefill passes: prefill_chunk, cut at the departure; the LocalEngine's: prefill_chunk.
    let passes = |marks: &[usize]| {
        let (mut at, mut ends) = (0, Vec::new());
        while at < prompt.len() {
            let mut end = (at + cfg.prefill_chunk).min(prompt.len());
            if let Some(m) = marks.iter().copied().filter(|&m| at < m && m < end).min() {
                end = m;
            }
            ends.push(end);
            at = end;
        }
        ends
    };
    // Each split replayed, the session's answer teacher-forced one token a pass (as decode).
    let replay = |ends: &[usize]| -> Vec<Vec<f32>> {
        let mut r = e.new_session(cfg.clone()).unwrap();
        let (mut at, mut steps) = (0, Vec::new());
        for &end in ends {
            let seg = &prompt[at..end];
            let l = r.prefill_logits(seg, seg.len() - 1).unwrap().pop().unwrap();
            if end == prompt.len() {
                steps.push(l);
            }
            at = end;
        }
        for &t in &gen[..gen.len() - 1] {
            steps.push(r.prefill_logits(&[t], 0).unwrap().pop().unwrap());
        }
        steps
    };
    let mut k = e
        .constraint_compiler()
        .unwrap()
        .compile(&t.constraint_for_model(ToolFormat::QwenXml, Thinking::Off))
        .unwrap()
        .unwrap();
    let mut masks = Vec::new();
    for &id in gen {
        masks.push(k.greedy_words().unwrap().unwrap_or_default());
        k.commit(id).unwrap();
    }
    let allowed = |m: &[u32], i: usize| m.get(i / 32).is_some_and(|w| w >> (i % 32) & 1 == 1);
    let top = |l: &[f32], m: &[u32]| {
        let mut v: Vec<(usize, f32)> = l.iter().copied().enumerate().filter(|&(i, _)| allowed(m, i)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(3);
        v
    };
    let (se, le) = (passes(&[dep]), passes(&[]));
    eprintln!("passes: session {se:?}, local {le:?}");
    let (rs, rl) = (replay(&se), replay(&le));
    let (mut min_gap, mut max_d, mut faithful) = ((f32::MAX, 0), 0f32, true);
    for (step, ((ls, ll), m)) in rs.iter().zip(&rl).zip(&masks).enumerate() {
        let (ts, tl) = (top(ls, m), top(ll, m));
        faithful &= ts[0].0 == gen[step] as usize;
        max_d = max_d.max(ls.iter().zip(ll).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max));
        if ts.len() > 1 {
            let gap = ts[0].1 - ts[1].1;
            if gap < min_gap.0 {
                min_gap = (gap, step);
            }
        }
        if ts[0].0 != tl[0].0 {
            let (gs, gl) = (ts[0].1 - ts[1].1, tl[0].1 - tl[1].1);
            eprintln!("parted at step {step}: session split picks {} (masked top {ts:?}, gap {gs:.6}), the prefill_chunk split picks {} (masked top {tl:?}, gap {gl:.6})", ts[0].0, tl[0].0);
            assert!(
                gs < 0.25 && gl < 0.25,
                "the splits part at step {step} with a gap of {gs} / {gl}: more than rounding"
            );
            break;
        }
    }
    eprintln!("session replay reproduces its picks: {faithful}; smallest masked top-2 gap up to there {:.6} at step {}; largest |logit difference| between the splits {max_d:.3e}", min_gap.0, min_gap.1);
    assert!(faithful, "the replay of the session's split does not reproduce its answer");
}
