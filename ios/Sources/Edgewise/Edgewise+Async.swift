// Swift concurrency on top of the generated bindings (Edgewise.swift). Mirrors the Kotlin layer
// (android/edgewise/src/main/kotlin/dev/edgewise/Coroutines.kt):
// - blocking native calls run on a dedicated dispatch queue, never on Swift's cooperative thread
//   pool (whose few threads must not block), bridged to async code with checked continuations;
// - every call gets its own `CancelToken`, created before the call; cancelling the task (or
//   dropping the stream) cancels that token and no other call, also before the call started;
// - `send` returns, and a cancelled stream ends, only once the native call has returned, so the
//   session is free again right after. (A consumer that `break`s out of a stream cancels it; the
//   next call on the session then waits, bounded, for it to unwind: core's `UNWIND_WAIT`.)
// Not compiled on our Linux machines (no Swift toolchain); kept in step with the Kotlin layer,
// which the JVM tests exercise.
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
    private let body: @Sendable (String) -> Void
    public init(_ body: @escaping @Sendable (String) -> Void) { self.body = body }
    public func onToken(text: String) throws { body(text) }
}

/// Where Edgewise's blocking calls run: a concurrent queue of its own (GCD grows it as calls
/// block), so generation never occupies a thread of Swift's cooperative pool.
let edgewiseNativeQueue = DispatchQueue(label: "dev.edgewise.native", qos: .userInitiated, attributes: .concurrent)

/// Runs the blocking `body` on `edgewiseNativeQueue` with a `CancelToken` of its own, created
/// before the call. Cancelling the calling task cancels that token (if the task is already
/// cancelled, before `body` starts); returns once `body` has returned.
func edgewiseNativeCall<T: Sendable>(_ body: @escaping @Sendable (CancelToken) throws -> T) async throws -> T {
    let token = CancelToken()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            edgewiseNativeQueue.async {
                continuation.resume(with: Result { try body(token) })
            }
        }
    } onCancel: {
        token.cancel()
    }
}

/// Pieces handed from the native thread to the consumer: `next()` suspends until a piece arrives
/// or the native call has returned (then `nil`, or its error once).
final class EdgewiseNativeChannel<Element: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [Element] = []
    private var ended = false
    private var failure: Error?
    private var waiter: CheckedContinuation<Element?, Error>?

    func send(_ element: Element) {
        lock.lock()
        if let w = waiter {
            waiter = nil
            lock.unlock()
            w.resume(returning: element)
        } else {
            pending.append(element)
            lock.unlock()
        }
    }

    func finish(_ error: Error?) {
        lock.lock()
        ended = true
        failure = error
        let w = waiter
        waiter = nil
        if w != nil { failure = nil }
        lock.unlock()
        if let w {
            if let error { w.resume(throwing: error) } else { w.resume(returning: nil) }
        }
    }

    func next() async throws -> Element? {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Element?, Error>) in
            lock.lock()
            if !pending.isEmpty {
                let e = pending.removeFirst()
                lock.unlock()
                c.resume(returning: e)
            } else if ended {
                let f = failure
                failure = nil
                lock.unlock()
                if let f { c.resume(throwing: f) } else { c.resume(returning: nil) }
            } else {
                waiter = c
                lock.unlock()
            }
        }
    }
}

/// One streaming native call: started by the first `next()`, with its own `CancelToken` taken
/// at creation. Held only by the stream, so dropping the stream cancels the call.
final class EdgewiseNativeStream<Element: Sendable>: @unchecked Sendable {
    typealias Work = @Sendable (CancelToken, @escaping @Sendable (Element) -> Void) throws -> Void
    private let token = CancelToken()
    private let channel = EdgewiseNativeChannel<Element>()
    private let lock = NSLock()
    private var work: Work?

    init(_ work: @escaping Work) { self.work = work }

    deinit { token.cancel() }

    /// The stream: a consumer's cancel reaches the token (installed before the work starts),
    /// and the stream ends only after the native call returned.
    static func make(_ work: @escaping Work) -> AsyncThrowingStream<Element, Error> {
        let call = EdgewiseNativeStream(work)
        return AsyncThrowingStream(unfolding: { @Sendable in try await call.next() })
    }

    private func next() async throws -> Element? {
        let token = self.token
        return try await withTaskCancellationHandler {
            startOnce()
            return try await channel.next()
        } onCancel: {
            token.cancel()
        }
    }

    private func startOnce() {
        lock.lock()
        let work = self.work
        self.work = nil
        lock.unlock()
        guard let work else { return }
        let (token, channel) = (self.token, self.channel)
        edgewiseNativeQueue.async {
            do {
                try work(token) { channel.send($0) }
                channel.finish(nil)
            } catch {
                channel.finish(error)
            }
        }
    }
}

public extension Engine {
    /// Loads a model on Edgewise's native queue (seconds). Share one engine per process.
    static func open(path: String, config: EngineConfig) async throws -> Engine {
        try await edgewiseNativeCall { _ in try Engine.load(path: path, config: config) }
    }
}

public extension ChatSession {
    /// Streams the answer to `message` piece by piece. The message and the answer join the
    /// history. Cancelling the consuming task (or dropping the stream) cancels this generation.
    func stream(_ message: String, params: GenerationParams) -> AsyncThrowingStream<String, Error> {
        EdgewiseNativeStream<String>.make { [self] token, yield in
            _ = try self.chat(message: message, params: params, sink: ClosureTokenSink(yield), cancel: token)
        }
    }

    /// Like `stream`, for a raw completion of `prompt` (no chat template, history unchanged).
    func streamCompletion(_ prompt: String, params: GenerationParams) -> AsyncThrowingStream<String, Error> {
        EdgewiseNativeStream<String>.make { [self] token, yield in
            _ = try self.complete(prompt: prompt, params: params, sink: ClosureTokenSink(yield), cancel: token)
        }
    }

    /// Sends `message` and returns the whole `Generation` (text, stop reason, metrics).
    /// Cancelling the calling task cancels this generation and returns once it stopped.
    func send(_ message: String, params: GenerationParams,
              onToken: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Generation {
        try await edgewiseNativeCall { [self] token in
            try self.chat(message: message, params: params, sink: ClosureTokenSink(onToken), cancel: token)
        }
    }

    /// Like `send`, for a raw completion of `prompt`.
    func completion(_ prompt: String, params: GenerationParams,
                    onToken: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Generation {
        try await edgewiseNativeCall { [self] token in
            try self.complete(prompt: prompt, params: params, sink: ClosureTokenSink(onToken), cancel: token)
        }
    }
}

#if canImport(UIKit)
import UIKit

/// Forwards iOS memory signals to `Engine.trim`: entering the background frees the idle KV
/// caches (`.background`); a memory warning also hands back the model's weight pages
/// (`.critical`; read again on the next generation). Keep it alive as long as the engine:
/// `let memory = EdgewiseMemory(engine: engine)`. Trims run on Edgewise's native queue.
public final class EdgewiseMemory: @unchecked Sendable {
    private var observers: [NSObjectProtocol] = []

    public init(engine: Engine) {
        let center = NotificationCenter.default
        let trim: @Sendable (TrimLevel) -> Void = { level in
            edgewiseNativeQueue.async { _ = try? engine.trim(level: level) }
        }
        observers.append(center.addObserver(
            forName: UIApplication.didReceiveMemoryWarningNotification, object: nil, queue: nil
        ) { _ in trim(.critical) })
        observers.append(center.addObserver(
            forName: UIApplication.didEnterBackgroundNotification, object: nil, queue: nil
        ) { _ in trim(.background) })
    }

    deinit {
        observers.forEach { NotificationCenter.default.removeObserver($0) }
    }
}
#endif
