// Swift concurrency on top of the generated bindings (Edgewise.swift). Mirrors the Kotlin layer
// (android/edgewise/src/main/kotlin/dev/edgewise/Coroutines.kt): generation blocks a background
// thread, streams pieces through a `TokenSink`, and cancelling the consumer cancels the
// generation through `ChatSession.cancel()`.
import Foundation

public extension EngineConfig {
    /// Core's default engine settings (`auto` backend with the GPU self-test, all cores).
    static func defaults() throws -> EngineConfig { try defaultEngineConfig() }
}

public extension SessionConfig {
    /// Core's default session settings.
    static func defaults() throws -> SessionConfig { try defaultSessionConfig() }
}

public extension GenerationParams {
    /// Core's default generation settings.
    static func defaults() throws -> GenerationParams { try defaultGenerationParams() }

    /// Greedy (deterministic) decoding for at most `maxTokens` tokens.
    static func greedy(maxTokens: UInt32) throws -> GenerationParams {
        try greedyGenerationParams(maxTokens: maxTokens)
    }
}

/// A `TokenSink` that forwards each piece to a closure (called on the generating thread).
public final class ClosureTokenSink: TokenSink, @unchecked Sendable {
    private let body: (String) -> Void
    public init(_ body: @escaping (String) -> Void) { self.body = body }
    public func onToken(text: String) throws { body(text) }
}

public extension Engine {
    /// Loads a model off the calling task's executor. Share one engine per process.
    static func open(path: String, config: EngineConfig) async throws -> Engine {
        try await Task.detached(priority: .userInitiated) {
            try Engine.load(path: path, config: config)
        }.value
    }
}

public extension ChatSession {
    /// Streams the answer to `message` piece by piece. The message and the answer join the
    /// history. Cancelling the consuming task (or dropping the stream) cancels the generation.
    func stream(_ message: String, params: GenerationParams) -> AsyncThrowingStream<String, Error> {
        streamFrom { session, sink in try session.chat(message: message, params: params, sink: sink) }
    }

    /// Like `stream`, for a raw completion of `prompt` (no chat template, history unchanged).
    func streamCompletion(_ prompt: String, params: GenerationParams) -> AsyncThrowingStream<String, Error> {
        streamFrom { session, sink in try session.complete(prompt: prompt, params: params, sink: sink) }
    }

    /// Sends `message` and returns the whole `Generation` (text, stop reason, metrics).
    /// Cancelling the calling task cancels the generation.
    func send(_ message: String, params: GenerationParams,
              onToken: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Generation {
        try await withTaskCancellationHandler {
            try await Task.detached(priority: .userInitiated) { [self] in
                try self.chat(message: message, params: params, sink: ClosureTokenSink(onToken))
            }.value
        } onCancel: { [self] in
            try? self.cancel()
        }
    }

    private func streamFrom(
        _ generate: @escaping @Sendable (ChatSession, TokenSink) throws -> Generation
    ) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let sink = ClosureTokenSink { piece in continuation.yield(piece) }
            Task.detached(priority: .userInitiated) { [self] in
                do {
                    _ = try generate(self, sink)
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
}
