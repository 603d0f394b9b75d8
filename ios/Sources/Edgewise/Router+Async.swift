// Swift concurrency for the privacy router (generated `Router`, Edgewise.swift). Mirrors the
// Kotlin layer (android/edgewise/src/main/kotlin/dev/edgewise/RouterFlow.kt): `send` blocks a
// background thread and streams through an `AnswerListener`; cancelling the consumer calls
// `Router.cancel()`. Not compiled on our Linux machines (no Swift toolchain); kept in step with
// the Kotlin layer, which the JVM tests exercise.
import Foundation

public extension CloudEndpoint {
    /// The core defaults (timeouts, retries, streaming) for an OpenAI-compatible endpoint.
    static func of(baseUrl: String, model: String) throws -> CloudEndpoint {
        try defaultCloudEndpoint(baseUrl: baseUrl, model: model)
    }
}

public extension ChatMessage {
    /// A user message.
    static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
    /// A system prompt.
    static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: text) }
    /// An earlier answer of the model.
    static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: .assistant, content: text) }
}

/// An `AnswerListener` that forwards to closures (called on the generating thread).
public final class ClosureAnswerListener: AnswerListener, @unchecked Sendable {
    private let token: (String) -> Void
    private let reset: () -> Void
    public init(onReset: @escaping () -> Void = {}, onToken: @escaping (String) -> Void) {
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
    /// ending with `.done`. Cancelling the consuming task (or dropping the stream) cancels it.
    func stream(_ messages: [ChatMessage], meta: RequestMeta, params: GenerationParams)
        -> AsyncThrowingStream<RouterEvent, Error>
    {
        AsyncThrowingStream { continuation in
            let listener = ClosureAnswerListener(
                onReset: { continuation.yield(.reset) },
                onToken: { piece in continuation.yield(.text(piece)) })
            Task.detached(priority: .userInitiated) { [self] in
                do {
                    let answer = try self.send(messages: messages, meta: meta, params: params, listener: listener)
                    continuation.yield(.done(answer))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { [weak self] termination in
                if case .cancelled = termination { try? self?.cancel() }
            }
        }
    }

    /// Routes `messages` and returns the whole `RoutedAnswer`. Cancelling the calling task
    /// cancels the answer.
    func ask(_ messages: [ChatMessage], meta: RequestMeta, params: GenerationParams,
             onReset: @escaping @Sendable () -> Void = {},
             onToken: @escaping @Sendable (String) -> Void = { _ in }) async throws -> RoutedAnswer {
        try await withTaskCancellationHandler {
            try await Task.detached(priority: .userInitiated) { [self] in
                try self.send(messages: messages, meta: meta, params: params,
                              listener: ClosureAnswerListener(onReset: onReset, onToken: onToken))
            }.value
        } onCancel: { [self] in
            try? self.cancel()
        }
    }
}
