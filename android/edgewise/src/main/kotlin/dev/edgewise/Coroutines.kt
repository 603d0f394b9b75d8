// Idiomatic Kotlin on top of the generated bindings (src/main/uniffi/dev/edgewise/edgewise.kt).
// Pure Kotlin + kotlinx.coroutines: the same file is compiled by the Android library and by the
// JVM test project (android/jvm-tests), so what the tests exercise is what apps get.
package dev.edgewise

import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.NonCancellable
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
 * Each collection has its own [CancelToken], taken before the native call: a collector cancelled
 * before the call started never starts it, and it never cancels another call on this session.
 * Errors arrive as [EdgewiseException]s. The message and the answer join the history.
 */
fun ChatSession.stream(message: String, params: GenerationParams = GenerationParams.defaults()): Flow<String> =
    streamFrom { sink, token -> chat(message, params, sink, token) }

/** Like [stream], for a raw completion of [prompt] (no chat template, history unchanged). */
fun ChatSession.streamCompletion(prompt: String, params: GenerationParams = GenerationParams.defaults()): Flow<String> =
    streamFrom { sink, token -> complete(prompt, params, sink, token) }

private fun streamFrom(generate: (TokenSink, CancelToken) -> Generation): Flow<String> = callbackFlow {
    val token = CancelToken()
    val sink = tokenSink { piece ->
        // Blocks the generating thread while the collector is slow (back-pressure); fails fast
        // once the collector is gone, and then stops this generation (and only this one).
        trySendBlocking(piece).onFailure { token.cancel() }
    }
    val work = launch(Dispatchers.IO) {
        try {
            generate(sink, token)
            channel.close()
        } catch (e: Throwable) {
            channel.close(e)
        }
    }
    try {
        // Runs when the flow completes or the collector is cancelled (a no-op after the end).
        awaitClose { token.cancel() }
    } finally {
        // The native call has returned (or never started) before the token is freed.
        withContext(NonCancellable) { work.join() }
        token.close()
    }
}

/**
 * Sends [message] and returns the whole [Generation] (text, stop reason, metrics), calling
 * [onToken] with each piece on the generating thread. Cancelling the calling coroutine cancels
 * this generation (its own [CancelToken]; also before it started) and returns once it stopped.
 */
suspend fun ChatSession.send(
    message: String,
    params: GenerationParams = GenerationParams.defaults(),
    onToken: (String) -> Unit = {},
): Generation = cancellable { token -> chat(message, params, tokenSink(onToken), token) }

/** Like [send], for a raw completion of [prompt]. */
suspend fun ChatSession.completion(
    prompt: String,
    params: GenerationParams = GenerationParams.defaults(),
    onToken: (String) -> Unit = {},
): Generation = cancellable { token -> complete(prompt, params, tokenSink(onToken), token) }

/**
 * Runs the blocking native [block] on [Dispatchers.IO] with a [CancelToken] of its own, created
 * before the call. Cancelling the calling coroutine cancels that token (a block not started yet
 * is never started) and returns once the native call has stopped.
 */
internal suspend fun <T> cancellable(block: (CancelToken) -> T): T {
    val token = CancelToken()
    try {
        return coroutineScope {
            val work = async(Dispatchers.IO) { block(token) }
            try {
                work.await()
            } catch (e: CancellationException) {
                token.cancel() // the blocking call returns soon after; coroutineScope waits for it
                throw e
            }
        }
    } finally {
        token.close()
    }
}
