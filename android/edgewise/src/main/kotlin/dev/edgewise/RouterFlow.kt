// Idiomatic Kotlin for the privacy router (generated `Router`, src/main/uniffi/dev/edgewise/edgewise.kt).
// Same shape as Coroutines.kt for sessions: the blocking native `send` runs on Dispatchers.IO,
// and cancelling the collector or the calling coroutine calls `Router.cancel()`.
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

/** The core defaults (timeouts, retries, streaming) for an OpenAI-compatible endpoint. */
fun CloudEndpoint.Companion.of(baseUrl: String, model: String): CloudEndpoint = defaultCloudEndpoint(baseUrl, model)

/** Per-request signals: [cloudRequested] is the app's "use the cloud for this one" reason. */
fun RequestMeta.Companion.of(cloudRequested: Boolean = false, localMeanLogprob: Float? = null): RequestMeta =
    RequestMeta(cloudRequested, localMeanLogprob)

/** A user message (builder shorthand). */
fun user(text: String) = ChatMessage(Role.USER, text)

/** A system prompt (builder shorthand). */
fun system(text: String) = ChatMessage(Role.SYSTEM, text)

/** An earlier answer of the model (builder shorthand). */
fun assistant(text: String) = ChatMessage(Role.ASSISTANT, text)

/** An [AnswerListener] from lambdas (called on the generating thread). */
fun answerListener(onReset: () -> Unit = {}, onToken: (String) -> Unit): AnswerListener = object : AnswerListener {
    override fun onToken(text: String) = onToken(text)
    override fun onReset() = onReset()
}

/** What [Router.stream] emits: text pieces, a reset (the cloud failed mid-answer; the local answer restarts), then the result. */
sealed interface RouterEvent {
    /** A piece of the answer. */
    data class Text(val text: String) : RouterEvent
    /** Discard the text shown so far for this answer: it restarts on the device. */
    data object Reset : RouterEvent
    /** The finished answer: where it ran and why, who served it, fallback, metrics. */
    data class Done(val answer: RoutedAnswer) : RouterEvent
}

/**
 * Routes [messages] (system prompt, history, new user message) and streams the answer as
 * [RouterEvent]s, ending with [RouterEvent.Done]. Runs on [Dispatchers.IO]; when the collector
 * stops early the answer is cancelled, and the flow completes once it has actually stopped.
 */
fun Router.stream(
    messages: List<ChatMessage>,
    meta: RequestMeta = RequestMeta.of(),
    params: GenerationParams = GenerationParams.defaults(),
): Flow<RouterEvent> = callbackFlow {
    val router = this@stream
    val finished = AtomicBoolean(false)
    val listener = object : AnswerListener {
        override fun onToken(text: String) {
            trySendBlocking(RouterEvent.Text(text)).onFailure { router.cancel() }
        }
        override fun onReset() {
            trySendBlocking(RouterEvent.Reset).onFailure { router.cancel() }
        }
    }
    launch(Dispatchers.IO) {
        try {
            val answer = send(messages, meta, params, listener)
            trySendBlocking(RouterEvent.Done(answer))
            finished.set(true)
            channel.close()
        } catch (e: Throwable) {
            finished.set(true)
            channel.close(e)
        }
    }
    awaitClose { if (!finished.get()) router.cancel() }
}

/**
 * Routes [messages] and returns the whole [RoutedAnswer], calling [onToken] with each piece and
 * [onReset] if a failed cloud answer is withdrawn. Cancelling the calling coroutine cancels the
 * answer and returns once it has stopped.
 */
suspend fun Router.ask(
    messages: List<ChatMessage>,
    meta: RequestMeta = RequestMeta.of(),
    params: GenerationParams = GenerationParams.defaults(),
    onReset: () -> Unit = {},
    onToken: (String) -> Unit = {},
): RoutedAnswer = coroutineScope {
    val work = async(Dispatchers.IO) { send(messages, meta, params, answerListener(onReset, onToken)) }
    try {
        work.await()
    } catch (e: CancellationException) {
        this@ask.cancel() // the blocking send returns soon after; coroutineScope waits for it
        throw e
    }
}
