package dev.edgewise

import com.networknt.schema.InputFormat
import com.networknt.schema.SchemaRegistry
import com.networknt.schema.SpecificationVersion
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows

/**
 * Structured output and tool calling through the Kotlin API, on the real model (issue 14). Every
 * JSON result is checked with an independent validator (networknt json-schema-validator), not
 * with Edgewise's own `valid` flag alone.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class StructuredTest {
    private val registry = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12)

    /** The validator's errors for [json] against [schema] (empty: valid). */
    private fun errors(schema: String, json: String): List<String> =
        registry.getSchema(schema, InputFormat.JSON).validate(json, InputFormat.JSON).map { it.toString() }

    private val orderSchema = """
        {"type":"object",
         "properties":{
           "item":{"type":"string","minLength":1,"maxLength":24},
           "quantity":{"type":"integer","minimum":1,"maximum":12},
           "colour":{"enum":["red","green","blue"]},
           "tags":{"type":"array","items":{"type":"string","maxLength":12},"minItems":1,"maxItems":3},
           "gift":{"type":"boolean"}
         },
         "required":["item","quantity","colour","tags"],
         "additionalProperties":false}
    """.trimIndent()

    private val cartTools = listOf(
        Tool(
            name = "add_to_cart",
            description = "Adds an item to the shopping cart.",
            parameters = """{"type":"object","properties":{"item":{"type":"string","maxLength":24},"qty":{"type":"integer","minimum":1,"maximum":9}},"required":["item","qty"],"additionalProperties":false}""",
        ),
        Tool(
            name = "open_work_order",
            description = "Opens a work order by number.",
            parameters = """{"type":"object","properties":{"id":{"type":"integer","minimum":1,"maximum":99999}},"required":["id"],"additionalProperties":false}""",
        ),
    )

    @Test
    fun jsonSchemaOutputParsesAndValidatesGreedyAndSampled() {
        val prompts = listOf("Order three red apples as a gift.", "I want a blue scarf, tagged winter.")
        val sampled = GenerationParams.defaults().copy(maxTokens = 160)
        for (prompt in prompts) {
            for ((label, params) in listOf("greedy" to GenerationParams.greedy(160), "seed 7" to sampled.copy(sampling = sampled.sampling.copy(seed = 7)))) {
                val session = TestSupport.newSession()
                val sink = TestSupport.Collector()
                val g = session.chat(prompt, params.withJsonSchema(orderSchema), sink)
                val what = "$label, prompt <$prompt>, text <${g.text}>"
                assertEquals(StopReason.EOS, g.stopReason, what)
                assertTrue(g.isValid, what)
                assertEquals(emptyList<String>(), errors(orderSchema, g.text), what)
                // `json` is the same value as the text.
                val json = requireNotNull(g.json) { what }
                assertTrue(JSONObject(json).similar(JSONObject(g.text)), what)
                assertEquals(g.text, sink.text(), "streamed pieces concatenate to the text")
            }
        }
    }

    @Test
    fun aLengthCutIsNeverValid() {
        val g = TestSupport.newSession().chat("Order apples.", GenerationParams.greedy(5).withJsonSchema(orderSchema), TestSupport.Collector())
        assertEquals(StopReason.MAX_TOKENS, g.stopReason)
        assertEquals(false, g.valid)
        assertFalse(g.isValid)
        assertNull(g.json)
        // Free text has no validity at all.
        assertNull(TestSupport.newSession().chat("Hi.", GenerationParams.greedy(4), TestSupport.Collector()).valid)
    }

    @Test
    fun regexAndGrammarConstraintsHold() {
        val session = TestSupport.newSession()
        val phone = session.chat("What is the shop's phone number?", GenerationParams.greedy(24).withRegex("0[0-9]{3} [0-9]{6}"), TestSupport.Collector())
        assertTrue(Regex("0[0-9]{3} [0-9]{6}").matches(phone.text), "<${phone.text}>")
        assertTrue(phone.isValid)
        val yesNo = TestSupport.newSession().chat(
            "Is water wet? Answer yes or no.",
            GenerationParams.greedy(8).withGrammar("start: answer \".\"\nanswer: \"yes\" | \"no\""),
            TestSupport.Collector(),
        )
        assertTrue(yesNo.text == "yes." || yesNo.text == "no.", "<${yesNo.text}>")
        assertTrue(yesNo.isValid)
    }

    @Test
    fun badConstraintsAreTypedErrorsBeforeAnyToken() {
        val session = TestSupport.newSession()
        val bad = listOf(
            OutputConstraint.JsonSchema("""{"type":"object","properties":{"a":{"type":"nonsense"}}}"""),
            OutputConstraint.JsonSchema("{not json"),
            OutputConstraint.JsonSchema("""{"type":"string","format":"no-such-format","x-unknown-keyword":1}"""),
            OutputConstraint.Regex("(unclosed"),
            OutputConstraint.Grammar("start: missing_rule"),
            OutputConstraint.JsonSchema(""),
        )
        for (c in bad) {
            val sink = TestSupport.Collector()
            val e = assertThrows<EdgewiseException.InvalidConstraint>("$c") {
                session.chat("Hello.", GenerationParams.greedy(16).copy(constraint = c), sink)
            }
            assertTrue(e.reason.isNotBlank())
            assertEquals(emptyList<String>(), sink.pieces(), "nothing generated for $c")
        }
        assertEquals(emptyList<ChatMessage>(), session.history(), "no turn joined the history")
        // The session still works after the errors.
        assertTrue(session.chat("Hello.", GenerationParams.greedy(4), TestSupport.Collector()).text.isNotEmpty())
    }

    @Test
    fun toolCallArgumentsValidateAndResultsContinueTheCachedSession() {
        val session = TestSupport.newSession(maxContext = 1024)
        session.setTools(cartTools, ToolChoice.Required)
        val g = session.chat("Please add two apples to my cart.", GenerationParams.greedy(256), TestSupport.Collector())
        assertTrue(g.toolCalls.isNotEmpty(), "<${g.text}>")
        assertTrue(g.isValid)
        for (call in g.toolCalls) {
            val tool = cartTools.single { it.name == call.name }
            assertEquals(emptyList<String>(), errors(tool.parameters, call.arguments), "${call.name} ${call.arguments}")
            assertTrue(call.id.startsWith("call_"), call.id)
        }
        assertEquals(g.toolCalls.size, g.toolCalls.map { it.id }.toSet().size, "ids are unique")

        // The result goes back on the cached conversation: only the new turn is prefilled.
        // (`auto` keeps the prompt's tool block; `none` would drop it and re-prefill.)
        session.setTools(cartTools, ToolChoice.Auto)
        val cachedBefore = session.cachedTokens()
        assertTrue(cachedBefore > 0)
        val results = g.toolCalls.map { ToolResult(it.id, it.name, """{"ok":true,"cart_size":2}""") }
        val answer = session.sendToolResults(results, GenerationParams.greedy(256), TestSupport.Collector())
        assertTrue(answer.text.isNotBlank())
        for (call in answer.toolCalls) {
            assertEquals(emptyList<String>(), errors(cartTools.single { it.name == call.name }.parameters, call.arguments))
        }
        val m = answer.metrics
        // At least the whole first prompt (system block with the tools, the user turn) is reused.
        // The constrained answer itself is re-prefilled today: its sampled tokens are not the
        // canonical tokenization of its text, and the next turn re-tokenizes the history.
        assertTrue(
            m.promptTokens - m.prefilledTokens >= g.metrics.promptTokens - 1,
            "reused the cache: prefilled ${m.prefilledTokens} of ${m.promptTokens} (first prompt ${g.metrics.promptTokens}, cached $cachedBefore)",
        )
        assertTrue(session.history().last().role == Role.ASSISTANT)
    }

    @Test
    fun aNamedToolChoiceCallsThatTool() {
        val session = TestSupport.newSession(maxContext = 1024)
        session.setTools(cartTools, ToolChoice.Named("open_work_order"))
        val g = session.chat("Open work order 4711.", GenerationParams.greedy(256), TestSupport.Collector())
        assertTrue(g.toolCalls.isNotEmpty(), "<${g.text}>")
        for (call in g.toolCalls) {
            assertEquals("open_work_order", call.name)
            assertEquals(emptyList<String>(), errors(cartTools[1].parameters, call.arguments), call.arguments)
        }
    }

    @Test
    fun toolLoopRunsTheToolAndSendsResultsBack() = runBlocking {
        val session = TestSupport.newSession(maxContext = 2048)
        val ran = mutableListOf<ToolCall>()
        val events = session.toolLoop(
            "Add two apples to my cart.",
            cartTools,
            ToolChoice.Required,
            GenerationParams.greedy(256),
            maxRounds = 2,
        ) { call ->
            ran += call
            """{"ok":true}"""
        }.toList()
        val calls = events.filterIsInstance<ToolEvent.Call>().map { it.call }
        assertEquals(ran, calls, "each reported call ran once, in order")
        assertTrue(calls.size >= 2, "two rounds of calls: $calls")
        assertEquals(calls.size, calls.map { it.id }.toSet().size, "ids are unique across rounds")
        for (call in calls) {
            assertEquals(emptyList<String>(), errors(cartTools.single { it.name == call.name }.parameters, call.arguments))
        }
        val done = events.last() as ToolEvent.Done
        // `required` forces calls every turn: the loop stopped at maxRounds with calls pending.
        assertTrue(done.generation.toolCalls.isNotEmpty())
        assertTrue(events.none { it is ToolEvent.Text }, "call answers are not streamed as text")
        // user, calls, results, calls, results, calls
        assertEquals(6, session.history().size)
    }

    @Test
    fun badToolsAreTypedErrors() {
        val session = TestSupport.newSession()
        val cases = listOf(
            listOf(Tool("t", "", """{"type":"string"}""")) to ToolChoice.Auto,
            listOf(Tool("t", "", "{not json")) to ToolChoice.Auto,
            listOf(Tool("bad name", "", "{}")) to ToolChoice.Auto,
            listOf(Tool("t", "", "{}"), Tool("t", "", "{}")) to ToolChoice.Auto,
            cartTools to ToolChoice.Named("no_such_tool"),
            emptyList<Tool>() to ToolChoice.Required,
        )
        for ((tools, choice) in cases) {
            assertThrows<EdgewiseException.InvalidConstraint>("$tools $choice") { session.setTools(tools, choice) }
        }
        // A tool whose schema llguidance cannot compile fails at the chat, typed, before any token.
        session.setTools(listOf(Tool("t", "", """{"type":"object","properties":{"a":{"type":"nonsense"}}}""")), ToolChoice.Required)
        val sink = TestSupport.Collector()
        assertThrows<EdgewiseException.InvalidConstraint> { session.chat("Hi.", GenerationParams.greedy(8), sink) }
        assertEquals(emptyList<String>(), sink.pieces())
        session.clearTools()
        assertNotEquals("", session.chat("Hi.", GenerationParams.greedy(4), TestSupport.Collector()).text)
    }
}
