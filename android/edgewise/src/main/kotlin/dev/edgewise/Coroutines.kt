// Idiomatic Kotlin on top of the generated bindings (src/main/uniffi/dev/edgewise/edgewise.kt).
// Pure Kotlin + kotlinx.coroutines: the same file is compiled by the Android library and by the
// JVM test project (android/jvm-tests), so what the tests exercise is what apps get.
package dev.edgewise

import java.util.concurrent.atomic.AtomicBoolean
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.onFailure
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** Core's default engine settings (`Auto` backend with the GPU self-test, all cores). */
fun EngineConfig.Companion.defaults(): EngineConfig = defaultEngineConfig()

/** Core's default session settings. */
fun SessionConfig.Companion.defaults(): SessionConfig = defaultSessionConfig()

/** Core's default generation settings. */
fun GenerationParams.Companion.defaults(): GenerationParams = defaultGenerationParams()

/** Greedy (deterministic) decoding for at most [maxTokens] tokens. */
fun GenerationParams.Companion.greedy(maxTokens: Int): GenerationParams {
    require(maxTokens > 0) { "maxTokens must be positive" }
    return greedyGenerationParams(maxTokens.toUInt())
}

/** A [TokenSink] from a lambda (called on the generating thread). */
fun tokenSink(onToken: (String) -> Unit): TokenSink = object : TokenSink {
    override fun onToken(text: String) = onToken(text)
}

/**
 * Loads a model on [Dispatchers.IO]. The engine holds the whole model in memory: share one per
 * process and `close()` it when done.
 */
suspend fun Engine.Companion.open(path: String, config: EngineConfig = EngineConfig.defaults()): Engine =
    withContext(Dispatchers.IO) { load(path, config) }

/**
 * Streams the answer to [message] piece by piece. Generation runs on [Dispatchers.IO]; when the
 * collector stops early (cancelled, `take(n)`, `first()`), the generation is cancelled, and the
 * flow completes only once it has actually stopped, so the session is free again right after.
 * Errors arrive as [EdgewiseException]s. The message and the answer join the history.
 */
fun ChatSession.stream(message: String, params: GenerationParams = GenerationParams.defaults()): Flow<String> =
    streamFrom { sink -> chat(message, params, sink) }

/** Like [stream], for a raw completion of [prompt] (no chat template, history unchanged). */
fun ChatSession.streamCompletion(prompt: String, params: GenerationParams = GenerationParams.defaults()): Flow<String> =
    streamFrom { sink -> complete(prompt, params, sink) }

private fun ChatSession.streamFrom(generate: (TokenSink) -> Generation): Flow<String> = callbackFlow {
    val session = this@streamFrom
    val finished = AtomicBoolean(false)
    val sink = tokenSink { piece ->
        // Blocks the generating thread while the collector is slow (back-pressure); fails fast
        // once the collector is gone, and then stops the generation.
        trySendBlocking(piece).onFailure { session.cancel() }
    }
    launch(Dispatchers.IO) {
        try {
            generate(sink)
            finished.set(true)
            channel.close()
        } catch (e: Throwable) {
            finished.set(true)
            channel.close(e)
        }
    }
    // Runs when the flow completes or the collector is cancelled; cancel only a live generation.
    awaitClose { if (!finished.get()) session.cancel() }
}

/**
 * Sends [message] and returns the whole [Generation] (text, stop reason, metrics), calling
 * [onToken] with each piece on the generating thread. Cancelling the calling coroutine cancels
 * the generation and returns once it has stopped.
 */
suspend fun ChatSession.send(
    message: String,
    params: GenerationParams = GenerationParams.defaults(),
    onToken: (String) -> Unit = {},
): Generation = cancellable { chat(message, params, tokenSink(onToken)) }

/** Like [send], for a raw completion of [prompt]. */
suspend fun ChatSession.completion(
    prompt: String,
    params: GenerationParams = GenerationParams.defaults(),
    onToken: (String) -> Unit = {},
): Generation = cancellable { complete(prompt, params, tokenSink(onToken)) }

private suspend fun ChatSession.cancellable(block: () -> Generation): Generation = coroutineScope {
    val work = async(Dispatchers.IO) { block() }
    try {
        work.await()
    } catch (e: CancellationException) {
        cancel() // the blocking call returns soon after; coroutineScope waits for it
        throw e
    }
}
