// Structured output, tool calling and LoRA adapters on top of the generated bindings (issues 14
// and 17). Mirrors the Kotlin layer (android/edgewise/src/main/kotlin/dev/edgewise/Structured.kt),
// which the JVM tests exercise. Not compiled on our Linux machines (no Swift toolchain).
import Foundation

public extension GenerationParams {
    /// These parameters, with output constrained to JSON valid against `schema` (a JSON Schema,
    /// as text). A bad schema throws `EdgewiseError.InvalidConstraint` before any token.
    func withJsonSchema(_ schema: String) -> GenerationParams {
        var p = self
        p.constraint = .jsonSchema(schema: schema)
        return p
    }

    /// These parameters, with output constrained to a full match of `pattern` (Rust `regex` syntax).
    func withRegex(_ pattern: String) -> GenerationParams {
        var p = self
        p.constraint = .regex(pattern: pattern)
        return p
    }

    /// These parameters, with output constrained to the Lark grammar `lark` (rule `start`).
    func withGrammar(_ lark: String) -> GenerationParams {
        var p = self
        p.constraint = .grammar(lark: lark)
        return p
    }
}

public extension Generation {
    /// Whether the text is a complete match of the request's constraint (or tools): `false` when
    /// the generation was cut by `maxTokens` (`.maxTokens`), a full context, a stop sequence or
    /// a cancel, and for free text (`valid == nil`).
    var isValid: Bool { valid == true }
}

/// What `ChatSession.toolLoop` reports, in order: text pieces, the calls it ran, then `.done`.
public enum ToolEvent: Sendable {
    /// A piece of the answer's text (tool-call answers are not streamed as text).
    case text(String)
    /// A call the model made, before the app's handler runs it.
    case call(ToolCall)
    /// The last answer. Its `toolCalls` are non-empty only when `maxRounds` ran out.
    case done(Generation)
}

/// Streams text answers only: the built-in format's text never starts with `{` (nor blank).
private final class TextOnlySink: TokenSink, @unchecked Sendable {
    private let yield: @Sendable (ToolEvent) -> Void
    private var decided: Bool?
    init(_ yield: @escaping @Sendable (ToolEvent) -> Void) { self.yield = yield }
    func onToken(text: String) throws {
        let head = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if decided == nil && !head.isEmpty { decided = !head.hasPrefix("{") }
        if decided == true { yield(.text(text)) }
    }
}

public extension ChatSession {
    /// Offers `tools` (with `choice`) in this session's chats and runs the tool loop for
    /// `message`: each answer that calls tools has its calls run by `runTool` (which returns the
    /// result text, usually JSON), the results go back with `sendToolResults` on the cached
    /// conversation, until the model answers in text or `maxRounds` answers with calls were
    /// handled. Cancelling the consuming task (or dropping the stream) cancels the running
    /// generation. `runTool` runs on Edgewise's native queue: keep it short or hop elsewhere.
    func toolLoop(_ message: String, tools: [Tool], choice: ToolChoice = .auto,
                  params: GenerationParams, maxRounds: Int = 8,
                  runTool: @escaping @Sendable (ToolCall) throws -> String) -> AsyncThrowingStream<ToolEvent, Error> {
        EdgewiseNativeStream<ToolEvent>.make { [self] token, yield in
            try self.setTools(tools: tools, choice: choice)
            var answer = try self.chat(message: message, params: params, sink: TextOnlySink(yield), cancel: token)
            var rounds = 0
            while !answer.toolCalls.isEmpty && rounds < max(maxRounds, 1) {
                rounds += 1
                var results: [ToolResult] = []
                for call in answer.toolCalls {
                    yield(.call(call))
                    if token.isCancelled() { throw EdgewiseError.Cancelled }
                    results.append(ToolResult(id: call.id, name: call.name, content: try runTool(call)))
                }
                answer = try self.sendToolResults(results: results, params: params, sink: TextOnlySink(yield), cancel: token)
            }
            yield(.done(answer))
        }
    }

    /// `sendToolResults` on Edgewise's native queue, cancelled with the calling task.
    func sendResults(_ results: [ToolResult], params: GenerationParams,
                     onToken: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Generation {
        try await edgewiseNativeCall { [self] token in
            try self.sendToolResults(results: results, params: params, sink: ClosureTokenSink(onToken), cancel: token)
        }
    }

    /// Runs the following turns with these adapters and scales (none: the base model). A
    /// different set empties the KV cache: nothing computed under another set is reused.
    func useAdapters(_ adapters: [(LoraAdapter, Float)]) throws {
        try setAdapters(adapters: adapters.map { AdapterScale(adapter: $0.0, scale: $0.1) })
    }
}

public extension Engine {
    /// `loadAdapter` on Edgewise's native queue. A bad file throws `EdgewiseError.Adapter`.
    func openAdapter(path: String) async throws -> LoraAdapter {
        try await edgewiseNativeCall { [self] _ in try self.loadAdapter(path: path) }
    }
}
