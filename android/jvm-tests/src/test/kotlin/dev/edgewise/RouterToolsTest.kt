package dev.edgewise

import com.sun.net.httpserver.HttpServer
import java.io.File
import java.net.InetAddress
import java.net.InetSocketAddress
import java.nio.file.Files
import java.util.Collections
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.json.JSONObject
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows

/**
 * Tools through the Kotlin router API: `Router.send(…, tools, toolChoice)` returns typed
 * `RoutedAnswer.toolCalls` from the real model (constrained) or from a loopback "cloud" (checked
 * against the schemas: an invalid call makes the device answer), and the calls and `Tool` results
 * sent back in the history count for the privacy check. Synthetic personal data only.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class RouterToolsTest {
    private lateinit var cloud: HttpServer
    private lateinit var dataDir: File
    private val received: MutableList<JSONObject> = Collections.synchronizedList(mutableListOf())

    /** What the cloud's next answers call: `lookup_order` with these arguments (JSON text). */
    private val cloudArguments: MutableList<String> = Collections.synchronizedList(mutableListOf())

    private val lookup = Tool(
        "lookup_order",
        "Looks up a shop order by its number.",
        """{"type":"object","properties":{"order":{"type":"integer","minimum":1,"maximum":99999}},"required":["order"],"additionalProperties":false}""",
    )

    @BeforeEach
    fun startCloud() {
        dataDir = Files.createTempDirectory("edgewise-router-tools").toFile()
        cloud = HttpServer.create(InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0)
        cloud.createContext("/v1/chat/completions") { ex ->
            received += JSONObject(ex.requestBody.readBytes().decodeToString())
            val args = synchronized(cloudArguments) { if (cloudArguments.isEmpty()) "{}" else cloudArguments.removeAt(0) }
            val call = mapOf("id" to "call_cloud", "type" to "function", "function" to mapOf("name" to "lookup_order", "arguments" to args))
            val answer = JSONObject()
                .put("id", "c1").put("object", "chat.completion").put("created", 1).put("model", "big")
                .put("choices", listOf(mapOf(
                    "index" to 0,
                    "message" to mapOf("role" to "assistant", "content" to null, "tool_calls" to listOf(call)),
                    "finish_reason" to "tool_calls",
                )))
                .toString().toByteArray()
            ex.responseHeaders.add("Content-Type", "application/json")
            ex.sendResponseHeaders(200, answer.size.toLong())
            ex.responseBody.use { it.write(answer) }
        }
        cloud.start()
    }

    @AfterEach
    fun stopCloud() {
        cloud.stop(0)
        dataDir.deleteRecursively()
    }

    private fun router(withCloud: Boolean): Router = Router(
        TestSupport.engine,
        SessionConfig.defaults().copy(maxContext = 1024),
        routerPolicyCloudAssist(),
        if (withCloud) CloudEndpoint.of("http://127.0.0.1:${cloud.address.port}/v1", "big-model").copy(stream = false, maxRetries = 0) else null,
        "sk-test-key",
        dataDir.path,
    )

    private val useCloud = RequestMeta.of(cloudRequested = true)

    private fun orderOf(call: ToolCall): Long = JSONObject(call.arguments).getLong("order")

    /** The real model on the device: a required call, typed and valid, then the result sent back. */
    @Test
    fun theDeviceAnswersWithTypedValidToolCallsAndTakesTheResultBack(): Unit = runBlocking {
        router(withCloud = false).use { router ->
            val convo = mutableListOf(user("Where is my order 1042?"))
            val a = router.ask(convo, RequestMeta.of(), GenerationParams.greedy(64), tools = listOf(lookup), toolChoice = ToolChoice.Required)
            assertEquals(RouteTarget.LOCAL, a.servedBy)
            assertTrue(a.toolCalls.isNotEmpty(), "a required choice calls: ${a.text.length} bytes of text")
            for (c in a.toolCalls) {
                assertEquals("lookup_order", c.name)
                assertTrue(c.id.isNotEmpty())
                assertTrue(orderOf(c) in 1..99999, c.arguments)
            }
            convo += ChatMessage.toolCalls(a.toolCalls)
            a.toolCalls.forEach { convo += ChatMessage.toolResult(it.id, """{"status":"shipped","eta_days":2}""") }
            val b = router.send(convo, RequestMeta.of(), GenerationParams.greedy(24), answerListener {}, null, emptyList(), listOf(lookup), ToolChoice.None)
            assertEquals(RouteTarget.LOCAL, b.servedBy)
            assertTrue(b.toolCalls.isEmpty() && b.text.isNotBlank(), "a text answer under `none`")
            // Unusable tools are a typed error before anything is generated.
            assertThrows<EdgewiseException.InvalidConstraint> {
                router.send(convo, RequestMeta.of(), GenerationParams.greedy(4), answerListener {}, null, emptyList(), listOf(Tool("a b", "", "{}")), null)
            }
            assertThrows<EdgewiseException.InvalidParameter> {
                router.send(listOf(ChatMessage(Role.ASSISTANT, "", listOf(ToolCall("c", "lookup_order", "[1]")), null)),
                    RequestMeta.of(), GenerationParams.greedy(4), answerListener {}, null, emptyList(), listOf(lookup), null)
            }
        }
    }

    /** The cloud's calls come back typed when valid; an invalid one is never passed on. */
    @Test
    fun cloudToolCallsAreTypedAndCheckedAgainstTheSchema() {
        router(withCloud = true).use { router ->
            val ask = listOf(user("Where is my order 1042?"))
            cloudArguments += """{"order": 1042}"""
            val a = router.send(ask, useCloud, GenerationParams.greedy(64), answerListener {}, null, emptyList(), listOf(lookup), null)
            assertEquals(RouteTarget.CLOUD, a.servedBy)
            assertNull(a.fallback)
            assertEquals(listOf(ToolCall("call_cloud", "lookup_order", """{"order":1042}""")), a.toolCalls)
            val sent = received.single()
            assertEquals("lookup_order", sent.getJSONArray("tools").getJSONObject(0).getJSONObject("function").getString("name"))
            assertEquals("auto", sent.getString("tool_choice"))

            cloudArguments += """{"order": "soon"}"""
            val b = router.send(ask, useCloud, GenerationParams.greedy(64), answerListener {}, null, emptyList(), listOf(lookup), ToolChoice.Required)
            assertEquals(RouteTarget.LOCAL, b.servedBy, "the invalid cloud call was passed on")
            assertEquals(CloudFailureKind.INVALID_TOOL_CALL, b.fallback?.kind)
            assertTrue(b.toolCalls.isNotEmpty() && b.toolCalls.all { it.name == "lookup_order" && orderOf(it) in 1..99999 }, "${b.toolCalls}")
            assertEquals(2, received.size)
        }
    }

    /** Personal data in a tool result keeps the next turn on the device; the same turn without it leaves. */
    @Test
    fun aToolResultWithPersonalDataKeepsTheTurnOnTheDevice() {
        router(withCloud = true).use { router ->
            val call = ToolCall("call_7", "lookup_order", """{"order":1042}""")
            fun convo(result: String) = listOf(user("Where is my order 1042?"), ChatMessage.toolCalls(listOf(call)), ChatMessage.toolResult("call_7", result))
            val secret = convo("""{"customer":"Jane Doe","card":"4539 1488 0343 6467","exp":"04/27"}""")
            assertEquals(RouteTarget.LOCAL, router.decide(secret, useCloud, listOf(lookup)).target)
            val a = router.send(secret, useCloud, GenerationParams.greedy(24), answerListener {}, null, emptyList(), listOf(lookup), ToolChoice.None)
            assertEquals(RouteTarget.LOCAL, a.servedBy)
            assertTrue(RouteReason.SENSITIVE in a.decision.reasons, "${a.decision.reasons}")
            assertTrue(received.isEmpty(), "the tool result reached the cloud")

            cloudArguments += """{"order": 1043}"""
            val b = router.send(convo("""{"status":"shipped"}"""), useCloud, GenerationParams.greedy(24), answerListener {}, null, emptyList(), listOf(lookup), null)
            assertEquals(RouteTarget.CLOUD, b.servedBy)
            val msgs = received.single().getJSONArray("messages")
            assertEquals("call_7", msgs.getJSONObject(1).getJSONArray("tool_calls").getJSONObject(0).getString("id"))
            assertEquals("tool", msgs.getJSONObject(2).getString("role"))
            assertEquals("call_7", msgs.getJSONObject(2).getString("tool_call_id"))
        }
    }
}
