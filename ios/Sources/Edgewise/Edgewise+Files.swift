// Files, bundles and logging for Swift apps (issue 16), on top of the generated bindings
// (Edgewise.swift): `URL` overloads, a model shipped in the app bundle, session files (a chat that
// survives the app being killed), and Edgewise's Rust log records in the unified log.
// Not compiled on our Linux machines (no Swift toolchain); the Rust calls underneath are the ones
// the JVM tests exercise (SessionFileTest, DiagnosticsTest).
import Foundation
import os

/// A URL that is not a `file://` URL: Edgewise reads and writes local files only.
public struct EdgewiseNotAFileURL: Error, Sendable {
    public let url: URL
}

private func filePath(_ url: URL) throws -> String {
    guard url.isFileURL else { throw EdgewiseNotAFileURL(url: url) }
    return url.path
}

public extension Engine {
    /// Loads the model at a file `URL` on Edgewise's native queue.
    static func open(url: URL, config: EngineConfig = .defaults()) async throws -> Engine {
        try await open(path: try filePath(url), config: config)
    }

    /// Loads a model shipped in an app bundle (`Bundle.main` by default), e.g.
    /// `Engine.open(resource: "gemma-3-270m-q4_k_m", withExtension: "gguf")`. The file is
    /// memory-mapped where it lies (bundles are read-only; nothing is written next to it).
    /// Throws `CocoaError(.fileNoSuchFile)` when the bundle has no such resource.
    static func open(resource: String, withExtension ext: String = "gguf", in bundle: Bundle = .main,
                     config: EngineConfig = .defaults()) async throws -> Engine {
        guard let url = bundle.url(forResource: resource, withExtension: ext) else {
            throw CocoaError(.fileNoSuchFile)
        }
        return try await open(url: url, config: config)
    }

    /// Loads the GGUF model in `length` bytes (to the end when negative) at `offset` of an open
    /// file descriptor (duplicated: close yours afterwards), on Edgewise's native queue.
    static func open(fileDescriptor fd: Int32, offset: Int64 = 0, length: Int64 = -1,
                     config: EngineConfig = .defaults()) async throws -> Engine {
        try await edgewiseNativeCall { _ in try Engine.loadFd(fd: fd, offset: offset, length: length, config: config) }
    }

    /// A session restored from a file written by `ChatSession.save(to:)`, read on Edgewise's
    /// native queue. Throws `EdgewiseError.SessionModelMismatch` for another model's file and
    /// `EdgewiseError.SessionFile` for a damaged, truncated or foreign one.
    func restoreSession(from url: URL) async throws -> ChatSession {
        let path = try filePath(url)
        return try await edgewiseNativeCall { [self] _ in try self.restoreSession(path: path) }
    }
}

public extension ChatSession {
    /// Saves the conversation and its KV cache to `url` (crash-safe: temporary file, sync, rename),
    /// on Edgewise's native queue. Keep it in app-private storage (it holds the conversation), e.g.
    /// Application Support with `isExcludedFromBackup` set: the file is large (~14 MiB for 1,000 tokens).
    func save(to url: URL) async throws {
        let path = try filePath(url)
        try await edgewiseNativeCall { [self] _ in try self.save(path: path) }
    }
}

/// Sends Edgewise's Rust log records to the unified log (subsystem `dev.edgewise` by default,
/// category = the Rust module). Messages are marked public: they carry sizes, timings, backends
/// and ids, never prompt or generated text. Install once: `try setLogSink(sink: OSLogSink(), level: .info)`.
public final class OSLogSink: LogSink, @unchecked Sendable {
    private let subsystem: String
    private let lock = NSLock()
    private var logs: [String: OSLog] = [:]

    public init(subsystem: String = "dev.edgewise") { self.subsystem = subsystem }

    public func log(record: LogRecord) throws {
        let type: OSLogType
        switch record.level {
        case .error: type = .error
        case .warn: type = .default
        case .info: type = .info
        case .debug, .trace: type = .debug
        case .off: return
        }
        os_log("%{public}@", log: osLog(record.target), type: type, record.message)
    }

    private func osLog(_ category: String) -> OSLog {
        lock.lock()
        defer { lock.unlock() }
        if let l = logs[category] { return l }
        let l = OSLog(subsystem: subsystem, category: category)
        logs[category] = l
        return l
    }
}
