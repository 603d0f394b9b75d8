package dev.edgewise

import com.sun.net.httpserver.HttpServer
import java.io.File
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.nio.file.Files
import java.util.Collections
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import org.json.JSONObject
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows

/**
 * The privacy router through the Kotlin API: the real model answers locally, and a loopback
 * "cloud" (the JDK's HttpServer speaking OpenAI chat-completions JSON and SSE) records every
 * request it receives. Synthetic personal data only.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class RouterTest {
    private lateinit var cloud: HttpServer
    private val received: MutableList<JSONObject> = Collections.synchronizedList(mutableListOf())
    private val authHeaders: MutableList<String> = Collections.synchronizedList(mutableListOf())
    private lateinit var dataDir: File

    private val cloudText = listOf("Rainbows appear when ", "sunlight is refracted ", "by raindrops.")

    @BeforeEach
    fun startCloud() {
        dataDir = Files.createTempDirectory("edgewise-router-test").toFile()
        cloud = HttpServer.create(InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0)
        cloud.createContext("/v1/chat/completions") { ex ->
            val body = JSONObject(ex.requestBody.readBytes().decodeToString())
            authHeaders += ex.requestHeaders.getFirst("Authorization") ?: "<none>"
            received += body
            if (body.optBoolean("stream")) {
                ex.responseHeaders.add("Content-Type", "text/event-stream")
                ex.sendResponseHeaders(200, 0)
                ex.responseBody.use { out ->
                    for (piece in cloudText) {
                        val chunk = JSONObject()
                            .put("id", "c1").put("object", "chat.completion.chunk").put("created", 1).put("model", "big")
                            .put("choices", listOf(mapOf("index" to 0, "delta" to mapOf("content" to piece), "finish_reason" to null)))
                        out.write("data: $chunk\n\n".toByteArray())
                        out.flush()
                    }
                    val last = JSONObject()
                        .put("id", "c1").put("object", "chat.completion.chunk").put("created", 1).put("model", "big")
                        .put("choices", listOf(mapOf("index" to 0, "delta" to emptyMap<String, String>(), "finish_reason" to "stop")))
                    out.write("data: $last\n\ndata: [DONE]\n\n".toByteArray())
                }
            } else {
                val answer = JSONObject()
                    .put("id", "c1").put("object", "chat.completion").put("created", 1).put("model", "big")
                    .put("choices", listOf(mapOf(
                        "index" to 0,
                        "message" to mapOf("role" to "assistant", "content" to cloudText.joinToString("")),
                        "finish_reason" to "stop",
                    )))
                    .put("usage", mapOf("prompt_tokens" to 9, "completion_tokens" to 11, "total_tokens" to 20))
                    .toString().toByteArray()
                ex.responseHeaders.add("Content-Type", "application/json")
                ex.sendResponseHeaders(200, answer.size.toLong())
                ex.responseBody.use { it.write(answer) }
            }
        }
        cloud.start()
    }

    @AfterEach
    fun stopCloud() {
        cloud.stop(0)
        dataDir.deleteRecursively()
    }

    private fun endpoint(stream: Boolean = true): CloudEndpoint =
        CloudEndpoint.of("http://127.0.0.1:${cloud.address.port}/v1", "big-model").copy(stream = stream, maxRetries = 0u)

    private fun router(cloud: CloudEndpoint?, dir: File = dataDir): Router = Router(
        TestSupport.engine,
        SessionConfig.defaults().copy(maxContext = 512u),
        routerPolicyCloudAssist(),
        cloud,
        "sk-test-key",
        dir.path,
    )

    private val useCloud = RequestMeta.of(cloudRequested = true)

    @Test
    fun aSensitiveRequestNeverLeavesAndIsAnsweredByTheRealModel() {
        router(endpoint()).use { router ->
            val messages = listOf(
                system("You are a helpful assistant."),
                user("I'm Maria Garcia, my email is maria.garcia@fastmail.com. Write one sentence to my dentist asking to move my appointment."),
            )
            assertEquals(RouteTarget.LOCAL, router.decide(messages, useCloud).target)
            val sink = TestSupport.Collector()
            val listener = answerListener { sink.onToken(it) }
            val a = router.send(messages, useCloud, GenerationParams.greedy(16), listener)
            assertEquals(RouteTarget.LOCAL, a.decision.target)
            assertEquals(RouteTarget.LOCAL, a.servedBy)
            assertTrue(RouteReason.SENSITIVE in a.decision.reasons, "${a.decision.reasons}")
            assertTrue(PiiCategory.EMAIL in a.decision.categories, "${a.decision.categories}")
            assertNull(a.fallback)
            assertTrue(a.text.isNotBlank(), "the local model answered")
            assertEquals(a.text, sink.text())
            assertTrue(a.completionTokens in 1u..16u)
            assertTrue(a.localMetrics!!.generatedTokens in 1u..16u)
            assertTrue(received.isEmpty(), "the sensitive request reached the cloud: $received")
        }
    }

    @Test
    fun aNonSensitiveRequestWithAReasonGoesToTheCloud() = runBlocking {
        router(endpoint(stream = true)).use { router ->
            val messages = listOf(user("Explain how rainbows form."))
            val events = router.stream(messages, useCloud, GenerationParams.greedy(32)).toList()
            val done = events.last() as RouterEvent.Done
            val a = done.answer
            assertEquals(RouteTarget.CLOUD, a.decision.target)
            assertEquals(RouteTarget.CLOUD, a.servedBy)
            assertEquals(listOf(RouteReason.APP_REQUESTED), a.decision.reasons)
            assertEquals(cloudText.joinToString(""), a.text)
            assertEquals(cloudText, events.filterIsInstance<RouterEvent.Text>().map { it.text })
            assertNull(a.localMetrics)
            assertEquals(1, received.size)
            val sent = received.single()
            assertEquals("Bearer sk-test-key", authHeaders.single())
            assertEquals("big-model", sent.getString("model"))
            assertEquals("Explain how rainbows form.", sent.getJSONArray("messages").getJSONObject(0).getString("content"))
            assertEquals(32, sent.getInt("max_tokens"))

            // Non-streaming endpoint, through the suspend API: a second router alive at the same
            // time needs its own directory (one router per offline queue, enforced by its lock).
            router(endpoint(stream = false), File(dataDir, "second")).use { plain ->
                val b = plain.ask(messages, useCloud, GenerationParams.greedy(32))
                assertEquals(RouteTarget.CLOUD, b.servedBy)
                assertEquals(cloudText.joinToString(""), b.text)
                assertEquals(11u, b.completionTokens)
            }
            assertEquals(2, received.size)
        }
    }

    @Test
    fun withoutAReasonOrWithTheCloudOffTheDeviceAnswers() {
        router(endpoint()).use { router ->
            val a = router.send(listOf(user("Explain how rainbows form.")), RequestMeta.of(), GenerationParams.greedy(8), answerListener {})
            assertEquals(RouteTarget.LOCAL, a.servedBy)
            assertEquals(listOf(RouteReason.NO_ESCALATION_REASON), a.decision.reasons)
        }
        router(null).use { router ->
            val a = router.send(listOf(user("Explain how rainbows form.")), useCloud, GenerationParams.greedy(8), answerListener {})
            assertEquals(RouteTarget.LOCAL, a.servedBy)
            assertTrue(RouteReason.NO_ENDPOINT in a.decision.reasons, "${a.decision.reasons}")
        }
        assertTrue(received.isEmpty())
    }

    @Test
    fun aMeasuredLowConfidenceSendsABenignRequestToTheCloud() {
        val messages = listOf(user("Explain how rainbows form."))
        val lp = router(endpoint()).use { it.measureConfidence(messages, 8u) }
        assertTrue(lp.isFinite() && lp <= 0f, "mean log-probability $lp")
        for ((threshold, cloudExpected) in listOf(lp + 0.5f to true, lp - 0.5f to false)) {
            val policy = routerPolicyCloudAssist().copy(lowConfidenceLogprob = threshold)
            Router(TestSupport.engine, SessionConfig.defaults().copy(maxContext = 512u), policy, endpoint(), "sk-test-key", dataDir.path)
                .use { router ->
                    val a = router.send(messages, RequestMeta.of(localMeanLogprob = lp), GenerationParams.greedy(8), answerListener {})
                    if (cloudExpected) {
                        assertEquals(listOf(RouteReason.LOW_LOCAL_CONFIDENCE), a.decision.reasons)
                        assertEquals(RouteTarget.CLOUD, a.servedBy)
                    } else {
                        assertEquals(listOf(RouteReason.NO_ESCALATION_REASON), a.decision.reasons)
                        assertEquals(RouteTarget.LOCAL, a.servedBy)
                    }
                }
        }
        assertEquals(1, received.size)
        assertThrows<EdgewiseException.InvalidParameter> { router(null).use { it.measureConfidence(messages, 0u) } }
    }

    @Test
    fun aRefusedCloudEndpointFallsBackToTheDevice() {
        val port = ServerSocket(0, 1, InetAddress.getLoopbackAddress()).use { it.localPort } // closed: refuses
        val dead = CloudEndpoint.of("http://127.0.0.1:$port/v1", "big-model").copy(maxRetries = 0u, connectTimeoutMs = 500u)
        router(dead).use { router ->
            val sink = TestSupport.Collector()
            val a = router.send(listOf(user("Explain how rainbows form.")), useCloud, GenerationParams.greedy(12), answerListener { sink.onToken(it) })
            assertEquals(RouteTarget.LOCAL, a.servedBy)
            assertTrue(RouteReason.OFFLINE in a.decision.reasons || a.fallback?.kind == CloudFailureKind.CONNECT,
                "${a.decision.reasons} ${a.fallback}")
            assertTrue(a.text.isNotBlank())
            assertEquals(a.text, sink.text())
        }
    }

    @Test
    fun cancelStopsARoutedAnswerAndListenerErrorsAreTyped() {
        router(endpoint()).use { router ->
            val long = GenerationParams.greedy(300).copy(ignoreEos = true)
            var n = 0
            val a = router.send(listOf(user("Tell me a long story about a lighthouse.")), RequestMeta.of(), long, answerListener {
                n += 1
                if (n == 2) router.cancel()
            })
            assertEquals(FinishReason.CANCELLED, a.finishReason)
            assertEquals(StopReason.CANCELLED, a.localStopReason)
            assertTrue(a.completionTokens < 20u, "stopped early: ${a.completionTokens}")
            // A later answer is not affected by the earlier cancel.
            val b = router.send(listOf(user("Say hi.")), RequestMeta.of(), GenerationParams.greedy(3).copy(ignoreEos = true), answerListener {})
            assertEquals(FinishReason.LENGTH, b.finishReason)
            val e = org.junit.jupiter.api.assertThrows<EdgewiseException.Callback> {
                router.send(listOf(user("Say hi.")), RequestMeta.of(), long, answerListener { throw IllegalStateException("host bug") })
            }
            assertTrue(e.reason.contains("host bug"), e.reason)
            assertFalse(router.policy().queueWhenOffline)
        }
    }

    @Test
    fun twoConcurrentRequestsWithOneCancelled() {
        router(endpoint()).use { router ->
            val params = GenerationParams.greedy(24).copy(ignoreEos = true)
            val tokens = listOf(CancelToken(), CancelToken())
            val started = java.util.concurrent.CountDownLatch(2)
            val pool = java.util.concurrent.Executors.newFixedThreadPool(2)
            try {
                val futures = tokens.map { token ->
                    pool.submit<RoutedAnswer> {
                        var once = true
                        router.send(listOf(ChatMessage.user("Tell me a story.")), RequestMeta.of(), params, answerListener {
                            if (once) { once = false; started.countDown() }
                        }, token)
                    }
                }
                assertTrue(started.await(120, TimeUnit.SECONDS), "both requests are generating")
                tokens[0].cancel()
                val a = futures[0].get(120, TimeUnit.SECONDS)
                val b = futures[1].get(120, TimeUnit.SECONDS)
                assertEquals(FinishReason.CANCELLED, a.finishReason)
                assertEquals(FinishReason.LENGTH, b.finishReason, "the other request ran to its end")
                assertEquals(24u, b.completionTokens)
                // A request whose token fired before the call is refused before anything is decided or sent.
                assertThrows<EdgewiseException.Cancelled> {
                    router.send(listOf(user("Explain how rainbows form.")), useCloud, params, answerListener {}, tokens[0])
                }
                assertTrue(received.isEmpty(), "nothing reached the cloud")
            } finally {
                pool.shutdownNow()
                tokens.forEach { it.close() }
            }
        }
    }
}
