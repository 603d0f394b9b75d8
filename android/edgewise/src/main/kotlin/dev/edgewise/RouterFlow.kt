// Idiomatic Kotlin for the privacy router (generated `Router`, src/main/uniffi/dev/edgewise/edgewise.kt).
// Same shape as Coroutines.kt for sessions: the blocking native `send` runs on Dispatchers.IO
// with a CancelToken of its own, which cancelling the collector or the calling coroutine fires.
package dev.edgewise

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.onFailure
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** The core defaults (timeouts, retries, streaming) for an OpenAI-compatible endpoint. */
fun CloudEndpoint.Companion.of(baseUrl: String, model: String): CloudEndpoint = defaultCloudEndpoint(baseUrl, model)

/** Per-request signals: [cloudRequested] is the app's "use the cloud for this one" reason. */
fun RequestMeta.Companion.of(cloudRequested: Boolean = false, localMeanLogprob: Float? = null): RequestMeta =
    RequestMeta(cloudRequested, localMeanLogprob)

/** A user message: `ChatMessage.user("…")`. */
fun ChatMessage.Companion.user(text: String) = ChatMessage(Role.USER, text)

/** A system prompt: `ChatMessage.system("…")`. */
fun ChatMessage.Companion.system(text: String) = ChatMessage(Role.SYSTEM, text)

/** An earlier answer of the model: `ChatMessage.assistant("…")`. */
fun ChatMessage.Companion.assistant(text: String) = ChatMessage(Role.ASSISTANT, text)

/** The model's earlier answer that made [calls] (`RoutedAnswer.toolCalls`), for the history. */
fun ChatMessage.Companion.toolCalls(calls: List<ToolCall>) = ChatMessage(Role.ASSISTANT, "", calls, null)

/** A tool's result for the call [callId] (`ToolCall.id`). */
fun ChatMessage.Companion.toolResult(callId: String, content: String) = ChatMessage(Role.TOOL, content, emptyList(), callId)

/** A user message (builder shorthand; prefer `ChatMessage.user`). */
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
 * stops early this request (its own [CancelToken], taken before the native call) is cancelled,
 * other requests of the router are not, and the flow completes once it has actually stopped.
 * [adapters]: the LoRA adapters and scales a local answer runs with (`adapter to 1.0f`; none:
 * the base model); a request under another set never reuses a KV cache computed under the last.
 */
fun Router.stream(
    messages: List<ChatMessage>,
    meta: RequestMeta = RequestMeta.of(),
    params: GenerationParams = GenerationParams.defaults(),
    adapters: List<Pair<LoraAdapter, Float>> = emptyList(),
    tools: List<Tool>? = null,
    toolChoice: ToolChoice? = null,
): Flow<RouterEvent> = callbackFlow {
    val router = this@stream // not ProducerScope.send
    val token = CancelToken()
    val listener = object : AnswerListener {
        override fun onToken(text: String) {
            trySendBlocking(RouterEvent.Text(text)).onFailure { token.cancel() }
        }
        override fun onReset() {
            trySendBlocking(RouterEvent.Reset).onFailure { token.cancel() }
        }
    }
    val work = launch(Dispatchers.IO) {
        try {
            val answer = router.send(messages, meta, params, listener, token, adapterScales(adapters), tools, toolChoice)
            trySendBlocking(RouterEvent.Done(answer))
            channel.close()
        } catch (e: Throwable) {
            channel.close(e)
        }
    }
    try {
        awaitClose { token.cancel() }
    } finally {
        withContext(NonCancellable) { work.join() }
        token.close()
    }
}

/**
 * Routes [messages] and returns the whole [RoutedAnswer], calling [onToken] with each piece and
 * [onReset] if a failed cloud answer is withdrawn. Cancelling the calling coroutine cancels this
 * request only (also before it started) and returns once it has stopped. [adapters] as in
 * [stream]. With [tools], the answer's calls are in `RoutedAnswer.toolCalls` (see `Router.send`).
 */
suspend fun Router.ask(
    messages: List<ChatMessage>,
    meta: RequestMeta = RequestMeta.of(),
    params: GenerationParams = GenerationParams.defaults(),
    adapters: List<Pair<LoraAdapter, Float>> = emptyList(),
    onReset: () -> Unit = {},
    tools: List<Tool>? = null,
    toolChoice: ToolChoice? = null,
    onToken: (String) -> Unit = {},
): RoutedAnswer = cancellable { token -> send(messages, meta, params, answerListener(onReset, onToken), token, adapterScales(adapters), tools, toolChoice) }

/** `adapter to scale` pairs as the native [AdapterScale]s. */
internal fun adapterScales(adapters: List<Pair<LoraAdapter, Float>>): List<AdapterScale> =
    adapters.map { (adapter, scale) -> AdapterScale(adapter, scale) }
