package dev.edgewise

import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows

/**
 * End-to-end tests of the Kotlin API against the real model and the host-built library.
 * Expected generations come from llama.cpp (tests/golden/gemma3/greedy.jsonl), not from Edgewise.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class SessionTest {
    private val engine get() = TestSupport.engine

    /** Long greedy run that only a cancel stops early. */
    private fun longParams(): GenerationParams = GenerationParams.greedy(400).copy(ignoreEos = true)

    @Test
    fun engineReportsTheModel() {
        val info = engine.info()
        assertEquals("gemma3", info.architecture)
        assertEquals(BackendKind.CPU, info.backend)
        assertEquals(262144, info.vocabSize)
        assertEquals(java.io.File(info.path).length(), info.fileSize)
    }

    @Test
    fun streamedCompletionMatchesLlamaCpp() {
        // The golden case with the widest top-1/top-2 logit gap: robust to accumulation order.
        val case = TestSupport.greedyCases().maxBy { it.minGap }
        val n = 12
        val session = TestSupport.newSession()
        val sink = TestSupport.Collector()
        val g = session.complete(case.prompt, GenerationParams.greedy(n).copy(ignoreEos = true), sink)
        assertEquals(StopReason.MAX_TOKENS, g.stopReason)
        assertEquals(case.tokenIds.take(n), g.tokenIds, "token ids vs llama.cpp for prompt ${case.prompt}")
        assertTrue(g.text.isNotBlank())
        assertTrue(sink.pieces().size > 1, "streamed in pieces")
        assertEquals(g.text, sink.text(), "the pieces concatenate to the returned text")
        assertTrue(case.text.startsWith(g.text), "text is a prefix of llama.cpp's: <${g.text}>")
        assertEquals(n, g.metrics.generatedTokens)
    }

    @Test
    fun samplingParametersReachTheEngine() {
        val session = TestSupport.newSession()
        val hot = GenerationParams.defaults().copy(
            sampling = greedySamplingParams().copy(temperature = 1.5f),
            maxTokens = 24,
            ignoreEos = true,
        )
        fun run(seed: Long) =
            session.complete("My favourite animal is", hot.copy(sampling = hot.sampling.copy(seed = seed)), TestSupport.Collector()).tokenIds
        val a = run(1)
        assertEquals(a, run(1), "same seed, same tokens")
        assertTrue(a != run(2), "another seed changes a hot sample")
    }

    @Test
    fun flowStreamsAChatAnswerIntoTheHistory() = runBlocking {
        val session = TestSupport.newSession()
        val pieces = session.stream("Name one colour.", GenerationParams.greedy(16)).toList()
        val answer = pieces.joinToString("")
        assertTrue(answer.isNotBlank())
        val history = session.history()
        assertEquals(listOf(Role.USER, Role.ASSISTANT), history.map { it.role })
        assertEquals("Name one colour.", history[0].content)
        assertEquals(answer, history[1].content)
    }

    @Test
    fun cancelStopsAGenerationMidStream() {
        val session = TestSupport.newSession()
        val firstToken = CountDownLatch(1)
        val sink = object : TokenSink {
            val pieces = mutableListOf<String>()
            override fun onToken(text: String) {
                pieces += text
                firstToken.countDown()
            }
        }
        val pool = Executors.newSingleThreadExecutor()
        try {
            val result = pool.submit<Generation> { session.complete("Once upon a time", longParams(), sink) }
            assertTrue(firstToken.await(120, TimeUnit.SECONDS), "first token arrived")
            session.cancel()
            val g = result.get(120, TimeUnit.SECONDS)
            assertEquals(StopReason.CANCELLED, g.stopReason)
            assertTrue(g.metrics.generatedTokens in 1..399, "stopped early: ${g.metrics.generatedTokens}")
            assertEquals(g.text, sink.pieces.joinToString(""))
        } finally {
            pool.shutdownNow()
        }
        // A later generation is not affected by the earlier cancel.
        val again = session.complete("Hello", GenerationParams.greedy(3).copy(ignoreEos = true), TestSupport.Collector())
        assertEquals(StopReason.MAX_TOKENS, again.stopReason)
    }

    @Test
    fun aBusySessionRefusesASecondGenerationWithATypedError() {
        val session = TestSupport.newSession()
        val firstToken = CountDownLatch(1)
        val pool = Executors.newSingleThreadExecutor()
        try {
            val running = pool.submit<Generation> {
                session.complete("Once upon a time", longParams(), tokenSink { firstToken.countDown() })
            }
            assertTrue(firstToken.await(120, TimeUnit.SECONDS))
            assertThrows<EdgewiseException.Busy> { session.complete("Hi", GenerationParams.greedy(2), TestSupport.Collector()) }
            assertThrows<EdgewiseException.Busy> { session.reset() }
            session.cancel()
            assertEquals(StopReason.CANCELLED, running.get(120, TimeUnit.SECONDS).stopReason)
        } finally {
            pool.shutdownNow()
        }
        session.reset() // free again
    }

    @Test
    fun twoSessionsGenerateAtTheSameTime() {
        val case = TestSupport.greedyCases().maxBy { it.minGap }
        val n = 8
        val params = GenerationParams.greedy(n).copy(ignoreEos = true)
        val sessions = listOf(TestSupport.newSession(), TestSupport.newSession())
        val bothStarted = CountDownLatch(2)
        val overlap = java.util.concurrent.atomic.AtomicBoolean(false)
        val pool = Executors.newFixedThreadPool(2)
        try {
            val futures = sessions.map { s ->
                pool.submit<Generation> {
                    var first = true
                    s.complete(case.prompt, params, tokenSink {
                        if (first) {
                            first = false
                            bothStarted.countDown()
                            // Both generations are live at once if the other one also started.
                            if (bothStarted.await(60, TimeUnit.SECONDS)) overlap.set(true)
                        }
                    })
                }
            }
            val results = futures.map { it.get(240, TimeUnit.SECONDS) }
            assertTrue(overlap.get(), "the two generations overlapped in time")
            for (g in results) {
                assertEquals(case.tokenIds.take(n), g.tokenIds)
            }
            assertEquals(results[0].text, results[1].text)
        } finally {
            pool.shutdownNow()
        }
    }

    @Test
    fun cancellingTheCollectorCancelsTheGeneration() = runBlocking {
        val session = TestSupport.newSession()
        val started = System.nanoTime()
        val pieces = session.stream("Tell me a long story about a lighthouse.", longParams()).take(3).toList()
        assertEquals(3, pieces.size)
        // take(3) returns only after the native generation stopped: the session is free, and the
        // answer in the history is the short, cancelled one (not 400 tokens).
        val history = session.history()
        assertEquals(2, history.size)
        assertTrue(history[1].content.startsWith(pieces.joinToString("")))
        assertTrue(session.cachedTokens() < 200, "generation stopped early: ${session.cachedTokens()} tokens cached")
        val elapsedS = (System.nanoTime() - started) / 1e9
        println("flow take(3) returned after %.1f s".format(elapsedS))
    }

    @Test
    fun cancellingASuspendedSendStopsTheGeneration() = runBlocking {
        val session = TestSupport.newSession()
        val firstToken = CountDownLatch(1)
        var generation: Generation? = null
        val job = launch(Dispatchers.Default) {
            generation = session.completion("Once upon a time", longParams()) { firstToken.countDown() }
        }
        withTimeout(120_000) {
            launch(Dispatchers.IO) { firstToken.await() }.join()
        }
        job.cancel()
        job.join() // returns once the native call has stopped
        assertEquals(null, generation, "a cancelled send does not return a result")
        assertTrue(session.cachedTokens() < 200)
        val g = session.completion("Hello", GenerationParams.greedy(2).copy(ignoreEos = true))
        assertEquals(StopReason.MAX_TOKENS, g.stopReason)
    }

    @Test
    fun droppedTurnsAreReportedInTheMetrics() {
        // The defaults carry the hybrid models' checkpoint count (Qwen 3.5; ignored by Gemma).
        assertEquals(4, SessionConfig.defaults().stateCheckpoints)
        val config = SessionConfig.defaults().copy(maxContext = 64, overflow = OverflowPolicy.DROP_OLDEST_TURNS, stateCheckpoints = 2)
        val session = engine.newSession(config)
        assertEquals(2, session.config().stateCheckpoints)
        val params = GenerationParams.greedy(10).copy(ignoreEos = true)
        val dropped = (0 until 4).map { session.chat("Tell me one more fact about the sea, briefly.", params, TestSupport.Collector()).metrics }
        assertEquals(0, dropped.first().droppedMessages, "nothing to drop on the first turn")
        val later = dropped.firstOrNull { it.droppedMessages > 0 }
        assertTrue(later != null && later.prefilledTokens > 0, "a 64-token context dropped turns within 4: $dropped")
        assertThrows<EdgewiseException> { engine.newSession(SessionConfig.defaults().copy(stateCheckpoints = 65)) }
    }

    @Test
    fun aCancelBeforeTheCallStartsIsHonoured() {
        val session = TestSupport.newSession()
        val token = CancelToken()
        token.cancel() // e.g. the user left the screen while the call was being scheduled
        val sink = TestSupport.Collector()
        val g = session.chat("Tell me a long story about a lighthouse.", longParams(), sink, token)
        assertEquals(StopReason.CANCELLED, g.stopReason)
        assertEquals(0, g.metrics.generatedTokens)
        assertTrue(sink.pieces().isEmpty())
        assertTrue(session.history().isEmpty(), "no turn was recorded")
        assertEquals(0, session.cachedTokens(), "nothing was prefilled")
        // The token belongs to that call only: the next call (no token, or a new one) runs.
        val again = session.complete("Hello", GenerationParams.greedy(3).copy(ignoreEos = true), TestSupport.Collector(), CancelToken())
        assertEquals(StopReason.MAX_TOKENS, again.stopReason)
        token.close()
    }

    @Test
    fun aSuspendedSendCancelledBeforeItRunsNeverStarts() = runBlocking {
        val session = TestSupport.newSession()
        // Cancelled before its first dispatch: the native call is never made.
        val job = launch(Dispatchers.Default, start = kotlinx.coroutines.CoroutineStart.LAZY) {
            session.completion("Once upon a time", longParams())
        }
        job.cancel()
        job.join()
        assertEquals(0, session.cachedTokens())
    }

    @Test
    fun restartAStreamOnTheSameSessionRightAway() = runBlocking {
        val session = TestSupport.newSession()
        // 1. take(n) returns only after the native generation stopped: the next stream starts at once.
        val first = session.stream("Tell me a long story about a lighthouse.", longParams()).take(2).toList()
        assertEquals(2, first.size)
        val second = session.stream("Name one colour.", GenerationParams.greedy(4)).toList()
        assertTrue(second.isNotEmpty())

        // 2. A generation cancelled from elsewhere that is still unwinding (its sink is slow) does
        //    not make the next call fail with Busy: the next call waits for it (bounded).
        val firstToken = CountDownLatch(1)
        val token = CancelToken()
        val pool = Executors.newSingleThreadExecutor()
        try {
            val running = pool.submit<Generation> {
                var once = true
                session.complete("Once upon a time", longParams(), tokenSink {
                    if (once) {
                        once = false
                        firstToken.countDown()
                        Thread.sleep(400) // still inside the generation when the next call arrives
                    }
                }, token)
            }
            assertTrue(firstToken.await(120, TimeUnit.SECONDS))
            token.cancel()
            val again = session.stream("Name one colour.", GenerationParams.greedy(4)).toList()
            assertTrue(again.isNotEmpty(), "the restarted stream produced text")
            assertEquals(StopReason.CANCELLED, running.get(120, TimeUnit.SECONDS).stopReason)
        } finally {
            pool.shutdownNow()
            token.close()
        }
    }

    @Test
    fun cancellingOneCallsTokenLeavesAnotherSessionsCallRunning() {
        val sessions = listOf(TestSupport.newSession(), TestSupport.newSession())
        val tokens = listOf(CancelToken(), CancelToken())
        val started = CountDownLatch(2)
        val pool = Executors.newFixedThreadPool(2)
        try {
            val futures = sessions.indices.map { i ->
                pool.submit<Generation> {
                    var once = true
                    sessions[i].complete("Once upon a time", GenerationParams.greedy(24).copy(ignoreEos = true), tokenSink {
                        if (once) { once = false; started.countDown() }
                    }, tokens[i])
                }
            }
            assertTrue(started.await(120, TimeUnit.SECONDS))
            tokens[0].cancel()
            assertEquals(StopReason.CANCELLED, futures[0].get(120, TimeUnit.SECONDS).stopReason)
            val other = futures[1].get(120, TimeUnit.SECONDS)
            assertEquals(StopReason.MAX_TOKENS, other.stopReason)
            assertEquals(24, other.metrics.generatedTokens)
        } finally {
            pool.shutdownNow()
            tokens.forEach { it.close() }
        }
    }

    @Test
    fun invalidParametersAreTypedErrors() {
        val session = TestSupport.newSession()
        val e = assertThrows<EdgewiseException.InvalidParameter> {
            session.complete("Hi", GenerationParams.defaults().copy(maxTokens = 0), TestSupport.Collector())
        }
        assertEquals("max_tokens", e.name)
        assertThrows<EdgewiseException.InvalidParameter> {
            engine.newSession(SessionConfig.defaults().copy(maxContext = 1))
        }
    }

    @Test
    fun aThrowingSinkStopsTheGenerationWithItsError() {
        val session = TestSupport.newSession()
        val e = assertThrows<EdgewiseException.Callback> {
            session.complete("Hello", longParams(), tokenSink { throw IllegalStateException("host bug") })
        }
        assertTrue(e.reason.contains("host bug"), e.reason)
        // A typed error thrown by the sink arrives as itself.
        assertThrows<EdgewiseException.Cancelled> {
            session.complete("Hello", longParams(), tokenSink { throw EdgewiseException.Cancelled() })
        }
        // The session is still usable.
        val g = session.complete("Hello", GenerationParams.greedy(2).copy(ignoreEos = true), TestSupport.Collector())
        assertEquals(StopReason.MAX_TOKENS, g.stopReason)
    }

    @Test
    fun resetForgetsTheConversation() = runBlocking {
        val session = TestSupport.newSession()
        session.send("Say hi.", GenerationParams.greedy(4))
        assertFalse(session.history().isEmpty())
        session.reset()
        assertTrue(session.history().isEmpty())
        assertEquals(0, session.cachedTokens())
    }
}
