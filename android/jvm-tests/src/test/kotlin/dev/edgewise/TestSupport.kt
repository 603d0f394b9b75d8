package dev.edgewise

import java.io.File
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions.assumeTrue

/** Shared fixtures: the real model (loaded once per JVM) and the llama.cpp goldens. */
object TestSupport {
    const val MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"

    val repoRoot: File =
        File(System.getProperty("edgewise.repo.root") ?: "../..").canonicalFile

    /** EDGEWISE_MODEL, else $EDGEWISE_HOME/models/<file> (EDGEWISE_HOME defaults to ~/.cache/edgewise). */
    fun modelFile(): File {
        System.getenv("EDGEWISE_MODEL")?.takeIf { it.isNotBlank() }?.let { return File(it) }
        val home = System.getenv("EDGEWISE_HOME")?.takeIf { it.isNotBlank() }
            ?: File(System.getProperty("user.home"), ".cache/edgewise").path
        return File(home, "models/$MODEL_FILE")
    }

    /** The model path, or skip (loudly) — unless EDGEWISE_REQUIRE_MODEL is set, then fail. */
    fun requireModel(): File {
        val f = modelFile()
        if (!f.isFile) {
            val msg = "the model is missing at ${f.path} (set EDGEWISE_MODEL or EDGEWISE_HOME)"
            val require = System.getenv("EDGEWISE_REQUIRE_MODEL")?.let { it.isNotEmpty() && it != "0" } ?: false
            if (require) fail<Unit>("EDGEWISE_REQUIRE_MODEL is set but $msg")
            System.err.println("SKIP (model-dependent tests): $msg; set EDGEWISE_REQUIRE_MODEL=1 to make this an error")
            assumeTrue(false, msg)
        }
        return f
    }

    /** One engine for the whole run: loading takes seconds. CPU backend keeps results deterministic. */
    val engine: Engine by lazy {
        val config = EngineConfig.defaults().copy(backend = BackendPreference.CPU)
        Engine.load(requireModel().path, config)
    }

    fun newSession(maxContext: Int = 512): ChatSession =
        engine.newSession(SessionConfig.defaults().copy(maxContext = maxContext))

    /** A greedy-decoding case from tests/golden/gemma3/greedy.jsonl (made by llama.cpp). */
    data class GreedyCase(val prompt: String, val tokenIds: List<Int>, val text: String, val minGap: Double)

    fun greedyCases(): List<GreedyCase> =
        File(repoRoot, "tests/golden/gemma3/greedy.jsonl").readLines()
            .filter { it.isNotBlank() }
            .map(::JSONObject)
            .filter { !it.has("header") && !it.optBoolean("long") }
            .map { o ->
                val ids = o.getJSONArray("greedy_token_ids")
                GreedyCase(
                    prompt = o.getString("prompt"),
                    tokenIds = (0 until ids.length()).map { ids.getInt(it) },
                    text = o.getString("greedy_text"),
                    minGap = o.getDouble("min_top1_top2_gap"),
                )
            }

    /** Collects streamed pieces; thread-safe. */
    class Collector : TokenSink {
        private val pieces = java.util.Collections.synchronizedList(mutableListOf<String>())
        override fun onToken(text: String) {
            pieces += text
        }
        fun pieces(): List<String> = synchronized(pieces) { pieces.toList() }
        fun text(): String = pieces().joinToString("")
    }
}
