// Swift concurrency for the privacy router (generated `Router`, Edgewise.swift). Mirrors the
// Kotlin layer (android/edgewise/src/main/kotlin/dev/edgewise/RouterFlow.kt): `send` blocks
// Edgewise's native queue and streams through an `AnswerListener`; each request has its own
// `CancelToken`, which cancelling the consumer fires (see Edgewise+Async.swift). Not compiled on our Linux machines (no Swift toolchain); kept in step with
// the Kotlin layer, which the JVM tests exercise.
import Foundation

public extension CloudEndpoint {
    /// The core defaults (timeouts, retries, streaming) for an OpenAI-compatible endpoint.
    static func of(baseUrl: String, model: String) -> CloudEndpoint {
        defaultCloudEndpoint(baseUrl: baseUrl, model: model)
    }
}

public extension ChatMessage {
    /// A user message.
    static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
    /// A system prompt.
    static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: text) }
    /// An earlier answer of the model.
    static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: .assistant, content: text) }
    /// The model's earlier answer that made `calls` (`RoutedAnswer.toolCalls`), for the history.
    static func toolCalls(_ calls: [ToolCall]) -> ChatMessage {
        ChatMessage(role: .assistant, content: "", toolCalls: calls, toolCallId: nil)
    }
    /// A tool's result for the call `callId` (`ToolCall.id`).
    static func toolResult(callId: String, content: String) -> ChatMessage {
        ChatMessage(role: .tool, content: content, toolCalls: [], toolCallId: callId)
    }
}

/// An `AnswerListener` that forwards to closures (called on the generating thread).
public final class ClosureAnswerListener: AnswerListener, @unchecked Sendable {
    private let token: @Sendable (String) -> Void
    private let reset: @Sendable () -> Void
    public init(onReset: @escaping @Sendable () -> Void = {}, onToken: @escaping @Sendable (String) -> Void) {
        self.token = onToken
        self.reset = onReset
    }
    public func onToken(text: String) throws { token(text) }
    public func onReset() throws { reset() }
}

/// What `Router.stream` yields: text pieces, a reset (the cloud failed mid-answer; the local
/// answer restarts), then the finished answer.
public enum RouterEvent: Sendable {
    /// A piece of the answer.
    case text(String)
    /// Discard the text shown so far for this answer: it restarts on the device.
    case reset
    /// The finished answer: where it ran and why, who served it, fallback, metrics.
    case done(RoutedAnswer)
}

public extension Router {
    /// Routes `messages` (system prompt, history, new user message) and streams the answer,
    /// ending with `.done`. Cancelling the consuming task (or dropping the stream) cancels this
    /// request only; the stream ends once the native call has returned. `adapters`: the LoRA
    /// adapters and scales a local answer runs with (none: the base model); a request under
    /// another set never reuses a KV cache computed under the last.
    func stream(_ messages: [ChatMessage], meta: RequestMeta, params: GenerationParams,
                adapters: [(LoraAdapter, Float)] = [], tools: [Tool]? = nil, toolChoice: ToolChoice? = nil)
        -> AsyncThrowingStream<RouterEvent, Error>
    {
        let scales = adapters.map { AdapterScale(adapter: $0.0, scale: $0.1) }
        return EdgewiseNativeStream<RouterEvent>.make { [self] token, yield in
            let listener = ClosureAnswerListener(onReset: { yield(.reset) }, onToken: { yield(.text($0)) })
            let answer = try self.send(messages: messages, meta: meta, params: params, listener: listener, cancel: token,
                                       adapters: scales, tools: tools, toolChoice: toolChoice)
            yield(.done(answer))
        }
    }

    /// Routes `messages` and returns the whole `RoutedAnswer`. Cancelling the calling task
    /// cancels this request only and returns once it stopped. `adapters` as in `stream`.
    func ask(_ messages: [ChatMessage], meta: RequestMeta, params: GenerationParams,
             adapters: [(LoraAdapter, Float)] = [],
             tools: [Tool]? = nil, toolChoice: ToolChoice? = nil,
             onReset: @escaping @Sendable () -> Void = {},
             onToken: @escaping @Sendable (String) -> Void = { _ in }) async throws -> RoutedAnswer {
        let scales = adapters.map { AdapterScale(adapter: $0.0, scale: $0.1) }
        return try await edgewiseNativeCall { [self] token in
            try self.send(messages: messages, meta: meta, params: params,
                          listener: ClosureAnswerListener(onReset: onReset, onToken: onToken), cancel: token,
                          adapters: scales, tools: tools, toolChoice: toolChoice)
        }
    }
}
