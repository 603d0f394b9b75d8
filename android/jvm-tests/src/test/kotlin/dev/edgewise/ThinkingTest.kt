package dev.edgewise

import java.io.File
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout

/**
 * `GenerationParams.enableThinking` through the Kotlin API (issue 14). A thinking template is
 * needed, not a thinking model: the synthesized Qwen 3 (random weights, the real Qwen 3 vocabulary
 * and chat template; `tests/reference/make_tool_template_synth.py`, run by `.ci/run`) at
 * `$EDGEWISE_HOME/reference/synth/qwen3-tools.gguf`, as the Rust tests use it. With
 * `enableThinking = false` the template prints its empty `<think>\n\n</think>\n\n` block at the
 * end of the prompt (6 tokens of the Qwen 3 vocabulary after the assistant header, as
 * `core/tests/tool_families.rs` counts with the tokenizer) and a required tool call comes at
 * once; unset (`null`) it does not. A template without thinking (Gemma 3) ignores it.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class ThinkingTest {
    /** The synthesized qwen3-tools GGUF, or skip (loudly) — unless EDGEWISE_REQUIRE_MODEL is set. */
    private fun qwen3Synth(): File {
        val home = System.getenv("EDGEWISE_HOME")?.takeIf { it.isNotBlank() }
            ?: File(System.getProperty("user.home"), ".cache/edgewise").path
        val f = File(home, "reference/synth/qwen3-tools.gguf")
        if (!f.isFile) {
            val msg = "no ${f.path} (tests/reference/make_tool_template_synth.py writes it)"
            val require = System.getenv("EDGEWISE_REQUIRE_MODEL")?.let { it.isNotEmpty() && it != "0" } ?: false
            if (require) fail<Unit>("EDGEWISE_REQUIRE_MODEL is set but $msg")
            System.err.println("SKIP (thinking-template tests): $msg")
            assumeTrue(false, msg)
        }
        return f
    }

    private val cart = listOf(
        Tool(
            name = "add_to_cart",
            description = "Adds an item to the shopping cart.",
            parameters = """{"type":"object","properties":{"item":{"enum":["apple","pear"]},"qty":{"type":"integer","minimum":1,"maximum":9}},"required":["item","qty"],"additionalProperties":false}""",
        ),
    )

    @Test
    fun enableThinkingFalseReachesTheTemplate() {
        val engine = Engine.load(qwen3Synth().path, EngineConfig.defaults().copy(backend = BackendPreference.CPU))
        val user = "Add two apples to my cart, please."
        fun promptTokens(thinking: Boolean?): Int {
            val s = engine.newSession(SessionConfig.defaults().copy(maxContext = 1024))
            val params = GenerationParams.greedy(1).copy(enableThinking = thinking)
            return s.chat(user, params, TestSupport.Collector()).metrics.promptTokens
        }
        val unset = promptTokens(null)
        assertEquals(unset + 6, promptTokens(false), "thinking off adds the empty <think> block")
        assertEquals(unset, promptTokens(true), "thinking on is the template's default")

        // Thinking off under `required`: the answer is the call itself, no <think> first.
        val s = engine.newSession(SessionConfig.defaults().copy(maxContext = 2048))
        s.setTools(cart, ToolChoice.Required)
        val g = s.chat(user, GenerationParams.greedy(200).copy(enableThinking = false), TestSupport.Collector())
        assertTrue(g.text.startsWith("<tool_call>\n"), "thinking off, yet: <${g.text.take(40)}>")
        assertTrue(g.isValid && g.toolCalls.isNotEmpty(), "<${g.text}>")
    }

    @Test
    fun aTemplateWithoutThinkingIgnoresIt() {
        val on = TestSupport.newSession().chat("Hello.", GenerationParams.greedy(6), TestSupport.Collector())
        val off = TestSupport.newSession().chat("Hello.", GenerationParams.greedy(6).copy(enableThinking = false), TestSupport.Collector())
        assertEquals(on.metrics.promptTokens, off.metrics.promptTokens)
        assertEquals(on.text, off.text)
    }
}
