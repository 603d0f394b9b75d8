package dev.edgewise

import java.io.File
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir

/**
 * LoRA adapters through the Kotlin API (issue 17), with the random-weight adapters written by
 * tests/reference/make_lora_goldens.py and llama.cpp's goldens for them (tests/golden/lora/).
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class AdapterTest {
    private val engine get() = TestSupport.engine

    /** $EDGEWISE_HOME/reference/lora/<name>.gguf, or skip (fail under EDGEWISE_REQUIRE_MODEL). */
    private fun adapterFile(name: String): File {
        TestSupport.requireModel()
        val home = System.getenv("EDGEWISE_HOME")?.takeIf { it.isNotBlank() }
            ?: File(System.getProperty("user.home"), ".cache/edgewise").path
        val f = File(home, "reference/lora/$name.gguf")
        if (!f.isFile) {
            val msg = "the adapter is missing at ${f.path} (tests/reference/make_lora_goldens.py adapters)"
            if (System.getenv("EDGEWISE_REQUIRE_MODEL")?.let { it.isNotEmpty() && it != "0" } == true) fail<Unit>(msg)
            System.err.println("SKIP: $msg")
            assumeTrue(false, msg)
        }
        return f
    }

    /** llama.cpp's golden with the adapter (first case) and its scale. */
    private data class Golden(val prompt: String, val tokens: List<Int>, val firstNearTie: Int, val scale: Float)

    private fun golden(name: String): Golden {
        val lines = File(TestSupport.repoRoot, "tests/golden/lora/$name.jsonl").readLines().filter { it.isNotBlank() }.map(::JSONObject)
        val scale = lines.first().getJSONObject("header").getDouble("scale").toFloat()
        // The first step whose top-1/top-2 logit gap is a near-tie (< 0.25): accumulation order
        // may flip it, so tokens are compared up to it. The case with the longest such prefix.
        return lines.drop(1).map { case ->
            val ids = case.getJSONArray("greedy_token_ids")
            val top5 = case.getJSONArray("top5")
            val nearTie = (0 until top5.length()).firstOrNull { s ->
                val step = top5.getJSONArray(s)
                step.getJSONArray(0).getDouble(1) - step.getJSONArray(1).getDouble(1) < 0.25
            } ?: top5.length()
            Golden(case.getString("prompt"), (0 until ids.length()).map { ids.getInt(it) }, nearTie, scale)
        }.maxBy { it.firstNearTie }
    }

    @Test
    fun anAdapterChangesTheOutputAsLlamaCppDoesAndSwitchingBackRestoresTheBase() {
        val adapter = engine.loadAdapter(adapterFile("gemma3-r8").path)
        assertEquals(8, adapter.rank())
        assertTrue(adapter.sizeBytes() > 0)
        val g = golden("gemma3-r8")
        val n = g.tokens.size
        val params = GenerationParams.greedy(n).copy(ignoreEos = true)
        val session = TestSupport.newSession()
        fun run() = session.complete(g.prompt, params, TestSupport.Collector())

        val base = run()
        session.useAdapters(adapter to g.scale)
        val adapted = run()
        assertNotEquals(base.tokenIds, adapted.tokenIds, "the adapter changes the output")
        val k = minOf(g.firstNearTie + 1, n)
        assertTrue(k >= 4, "golden has at least 4 steps before a near-tie")
        assertEquals(g.tokens.take(k), adapted.tokenIds.take(k), "llama.cpp's tokens with the adapter (up to the first near-tie)")
        // Switching re-prefilled the whole prompt: no KV computed under the base model was reused.
        assertEquals(adapted.metrics.promptTokens, adapted.metrics.prefilledTokens)
        // The same set again reuses its own cache (so the check above is not vacuous).
        val again = run()
        assertEquals(adapted.tokenIds, again.tokenIds)
        assertTrue(again.metrics.prefilledTokens < again.metrics.promptTokens, "same set: cache reused")

        session.useAdapters()
        val back = run()
        assertEquals(base.tokenIds, back.tokenIds, "back to the base model: exactly the base output")
        assertEquals(back.metrics.promptTokens, back.metrics.prefilledTokens, "nothing of the adapter's KV reused")

        // Scale 0 is the base model too.
        session.useAdapters(adapter to 0f)
        assertEquals(base.tokenIds, run().tokenIds)
    }

    @Test
    fun adaptersArePerSession() = runBlocking {
        val adapter = engine.openAdapter(adapterFile("gemma3-r8").path)
        val g = golden("gemma3-r8")
        val params = GenerationParams.greedy(8).copy(ignoreEos = true)
        val plain = TestSupport.newSession()
        val tuned = TestSupport.newSession()
        tuned.useAdapters(adapter to g.scale)
        val a = tuned.complete(g.prompt, params, TestSupport.Collector()).tokenIds
        val b = plain.complete(g.prompt, params, TestSupport.Collector()).tokenIds
        assertNotEquals(a, b, "the other session runs the base model")
    }

    /**
     * Each router request picks its adapter set: the local answer under a set is a fresh
     * router's first answer under that set (and the sets' answers differ); a request under
     * another set than the previous one prefills the whole prompt again (no KV computed under
     * another set); the same set again reuses the cache. `send` and the suspend `ask` both take
     * the set.
     */
    @Test
    fun routerRequestsPickTheirAdapters(@TempDir dir: File) = runBlocking<Unit> {
        val adapter = engine.loadAdapter(adapterFile("gemma3-r8").path)
        val scale = golden("gemma3-r8").scale
        val params = GenerationParams.greedy(10).copy(ignoreEos = true)
        val messages = listOf(ChatMessage.user("Write one sentence about the sea."))
        fun router(sub: String) =
            Router(engine, SessionConfig.defaults().copy(maxContext = 512), routerPolicyLocalOnly(), null, null, File(dir, sub).path)
        fun Router.sendWith(vararg set: Pair<LoraAdapter, Float>): RoutedAnswer =
            send(messages, RequestMeta.of(), params, answerListener {}, null, set.map { (a, s) -> AdapterScale(a, s) })
        val wantTuned = router("fresh-tuned").use { it.sendWith(adapter to scale).text }
        val wantBase = router("fresh-base").use { it.sendWith().text }
        assertNotEquals(wantTuned, wantBase, "the request's adapter set changes the answer")
        router("pooled").use { router ->
            val tuned = router.sendWith(adapter to scale)
            assertEquals(wantTuned, tuned.text, "the request's adapter set was not applied")
            // The same set again reuses the cache: only the prompt's last token runs again, as a
            // decode step (not a fresh prefill's arithmetic, so its text is not compared: this
            // random adapter makes the first token a close call), as in the Rust router test.
            val again = router.sendWith(adapter to scale)
            assertTrue(again.localMetrics!!.prefilledTokens < again.localMetrics!!.promptTokens, "same set: cache reused")
            val base = router.sendWith()
            assertEquals(wantBase, base.text, "an empty set is the base model")
            assertEquals(base.localMetrics!!.promptTokens, base.localMetrics!!.prefilledTokens, "another set reused a cache")
            val asked = router.ask(messages, RequestMeta.of(), params, adapters = listOf(adapter to scale))
            assertEquals(wantTuned, asked.text)
            assertEquals(asked.localMetrics!!.promptTokens, asked.localMetrics!!.prefilledTokens, "another set reused a cache")
            assertThrows<EdgewiseException.InvalidParameter> { router.sendWith(adapter to Float.NaN) }
        }
    }

    @Test
    fun badAdapterFilesAreTypedErrors(@TempDir dir: File) {
        TestSupport.requireModel()
        val garbage = File(dir, "garbage.gguf").apply { writeBytes(ByteArray(4096) { (it * 31 + 7).toByte() }) }
        val truncated = File(dir, "truncated.gguf").apply { writeBytes(adapterFile("gemma3-r8").readBytes().copyOf(100_000)) }
        val cases = mapOf(
            "garbage" to garbage,
            "truncated" to truncated,
            "a model, not an adapter" to TestSupport.modelFile(),
            "another architecture's adapter" to adapterFile("qwen3-r8"),
        )
        for ((what, file) in cases) {
            val e = assertThrows<EdgewiseException.Adapter>(what) { engine.loadAdapter(file.path) }
            assertTrue(e.reason.isNotBlank(), what)
        }
        assertThrows<EdgewiseException.Io> { engine.loadAdapter(File(dir, "missing.gguf").path) }
        // A non-finite scale is refused, and the session keeps working.
        val session = TestSupport.newSession()
        val adapter = engine.loadAdapter(adapterFile("gemma3-r8").path)
        assertThrows<EdgewiseException.InvalidParameter> { session.useAdapters(adapter to Float.NaN) }
        assertTrue(session.complete("Hello", GenerationParams.greedy(2), TestSupport.Collector()).tokenIds.isNotEmpty())
    }
}
