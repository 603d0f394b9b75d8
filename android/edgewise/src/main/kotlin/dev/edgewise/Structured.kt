// Structured output, tool calling and LoRA adapters on top of the generated bindings (issues 14
// and 17). Pure Kotlin + kotlinx.coroutines, compiled by the Android library and by the JVM tests.
package dev.edgewise

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.channelFlow
import kotlinx.coroutines.withContext

// === Output constraints ===

/** These parameters, with output constrained to JSON valid against [schema] (a JSON Schema, as text). */
fun GenerationParams.withJsonSchema(schema: String): GenerationParams =
    copy(constraint = OutputConstraint.JsonSchema(schema))

/** These parameters, with output constrained to a full match of [pattern] (Rust `regex` syntax). */
fun GenerationParams.withRegex(pattern: String): GenerationParams =
    copy(constraint = OutputConstraint.Regex(pattern))

/** These parameters, with output constrained to the language of the Lark grammar [lark] (rule `start`). */
fun GenerationParams.withGrammar(lark: String): GenerationParams =
    copy(constraint = OutputConstraint.Grammar(lark))

/**
 * Whether the text is a complete match of the request's constraint (or tools): `false` when the
 * generation was cut by `maxTokens` (`StopReason.MAX_TOKENS`), a full context, a stop sequence or
 * a cancel, and for free text (no constraint: [Generation.valid] is null).
 */
val Generation.isValid: Boolean get() = valid == true

// === Tools ===

/** What [ChatSession.toolLoop] reports, in order: text pieces, the calls it ran, then [Done]. */
sealed interface ToolEvent {
    /** A piece of the answer's text (tool-call answers are not streamed as text). */
    data class Text(val piece: String) : ToolEvent

    /** A call the model made, before the app's handler runs it. */
    data class Call(val call: ToolCall) : ToolEvent

    /** The last answer. Its [Generation.toolCalls] are non-empty only when `maxRounds` ran out. */
    data class Done(val generation: Generation) : ToolEvent
}

/**
 * Offers [tools] (with [choice]) in this session's chats and runs the tool loop for [message]:
 * each answer that calls tools has its calls run by [runTool] (which returns the result text,
 * usually JSON), the results go back with [ChatSession.sendToolResults] on the cached
 * conversation, until the model answers in text or [maxRounds] answers with calls were handled.
 * Generation runs on [Dispatchers.IO]; cancelling the collector cancels the running generation.
 * Text pieces are streamed; an answer that is a call (it starts with `{` in the built-in format)
 * is not. Errors arrive as [EdgewiseException]s (bad tools: [EdgewiseException.InvalidConstraint]).
 */
fun ChatSession.toolLoop(
    message: String,
    tools: List<Tool>,
    choice: ToolChoice = ToolChoice.Auto,
    params: GenerationParams = GenerationParams.defaults(),
    maxRounds: Int = 8,
    runTool: suspend (ToolCall) -> String,
): Flow<ToolEvent> = channelFlow {
    require(maxRounds > 0) { "maxRounds must be positive" }
    withContext(Dispatchers.IO) { setTools(tools, choice) }
    // Streams text answers only: the built-in format's text never starts with `{` (nor blank).
    fun sink(): TokenSink {
        var decided: Boolean? = null
        return tokenSink { piece ->
            if (decided == null && piece.isNotBlank()) decided = !piece.trimStart().startsWith("{")
            if (decided == true) trySendBlocking(ToolEvent.Text(piece))
        }
    }
    var answer = cancellable { token -> chat(message, params, sink(), token) }
    var rounds = 0
    while (answer.toolCalls.isNotEmpty() && rounds < maxRounds) {
        rounds++
        val results = answer.toolCalls.map { call ->
            send(ToolEvent.Call(call))
            ToolResult(call.id, call.name, runTool(call))
        }
        answer = cancellable { token -> sendToolResults(results, params, sink(), token) }
    }
    send(ToolEvent.Done(answer))
}

/**
 * Like [ChatSession.sendToolResults], on [Dispatchers.IO], cancelled with the calling coroutine.
 */
suspend fun ChatSession.sendResults(
    results: List<ToolResult>,
    params: GenerationParams = GenerationParams.defaults(),
    onToken: (String) -> Unit = {},
): Generation = cancellable { token -> sendToolResults(results, params, tokenSink(onToken), token) }

// === LoRA adapters ===

/** [Engine.loadAdapter] on [Dispatchers.IO] (reads the file; bad files: [EdgewiseException.Adapter]). */
suspend fun Engine.openAdapter(path: String): LoraAdapter = withContext(Dispatchers.IO) { loadAdapter(path) }

/**
 * Runs the following turns with these adapters and scales (`adapter to 1.0f`); none: the base
 * model. A different set empties the KV cache: nothing computed under another set is reused.
 */
fun ChatSession.useAdapters(vararg adapters: Pair<LoraAdapter, Float>) =
    setAdapters(adapters.map { (adapter, scale) -> AdapterScale(adapter, scale) })
