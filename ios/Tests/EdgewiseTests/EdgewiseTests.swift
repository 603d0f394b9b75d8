// `swift test` on a Mac (the XCFramework's macOS slice), after ios/build-xcframework.sh.
// Not run in our CI (no Swift toolchain on Linux); mirrors android/jvm-tests.
// Model tests need EDGEWISE_MODEL=<path to gemma-3-270m-q4_k_m.gguf> and are skipped without it.
import XCTest
@testable import Edgewise

final class EdgewiseTests: XCTestCase {
    func testPrivacyCheckRunsOnTheDevice() throws {
        XCTAssertTrue(try privacyCheck(text: "Call me on +44 7700 900123").sensitive)
        XCTAssertFalse(try privacyCheck(text: "Explain how rainbows form.").sensitive)
    }

    private func session() async throws -> ChatSession {
        guard let path = ProcessInfo.processInfo.environment["EDGEWISE_MODEL"] else {
            throw XCTSkip("EDGEWISE_MODEL is not set")
        }
        var config = try EngineConfig.defaults()
        config.backend = .cpu
        let engine = try await Engine.open(path: path, config: config)
        return try engine.newSession(config: try .defaults())
    }

    /// A task cancelled before its call starts never generates, and the session is free at once.
    func testCancelBeforeStartAndRestartRightAway() async throws {
        let s = try await session()
        let task = Task { try await s.send("Tell me a long story.", params: try .greedy(maxTokens: 400)) }
        task.cancel()
        let g = try await task.value
        XCTAssertEqual(g.stopReason, .cancelled)
        var pieces = 0
        for try await _ in s.stream("Name one colour.", params: try .greedy(maxTokens: 4)) { pieces += 1 }
        XCTAssertGreaterThan(pieces, 0)
    }

    /// Breaking out of a stream cancels it; the next call waits for it instead of failing Busy.
    func testBreakingOutOfAStreamThenSendingAgain() async throws {
        let s = try await session()
        for try await _ in s.stream("Tell me a long story.", params: try .greedy(maxTokens: 400)) { break }
        let g = try await s.send("Hello", params: try .greedy(maxTokens: 3))
        XCTAssertEqual(g.stopReason, .maxTokens)
    }
}
