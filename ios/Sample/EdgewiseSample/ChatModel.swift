// The sample's logic; mirrors android/sample/src/main/controller/dev/edgewise/sample/ChatController.kt.
import Edgewise
import Foundation

@MainActor
final class ChatModel: ObservableObject {
    enum ModelState {
        case notDownloaded
        case downloading(DownloadProgress)
        case loading
        case ready(EngineInfo)
        case failed(String)
    }

    struct Badge: Equatable { let place: String; let why: String }

    struct Message: Identifiable {
        let id = UUID()
        let fromUser: Bool
        var text: String
        var badge: Badge?
    }

    @Published private(set) var state: ModelState = .notDownloaded
    @Published private(set) var messages: [Message] = []
    @Published private(set) var generating = false

    private var download: ModelDownload?
    private var engine: Engine?
    private var session: ChatSession?
    private var answering: Task<Void, Never>?

    private var homeDir: String {
        FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0].path
    }

    /// Downloads (resuming, verifying) the catalog's default model over HTTPS, then loads it.
    func start() {
        Task {
            do {
                var config = try defaultFetchConfig()
                config.prefer = .https
                let d = try ModelDownload(modelId: try defaultModel().id, homeDir: homeDir, config: config)
                download = d
                let listener = ProgressListener { [weak self] p in
                    Task { @MainActor in self?.state = .downloading(p) }
                }
                let path = try await Task.detached { try d.fetch(listener: listener) }.value
                state = .loading
                let e = try await Engine.open(path: path, config: try .defaults())
                engine = e
                session = try e.newSession(config: try .defaults())
                state = .ready(try e.info())
            } catch {
                state = .failed("\(error)")
            }
        }
    }

    func cancelDownload() { try? download?.cancel() }

    /// Streams the answer to `text` into the last message.
    func send(_ text: String) {
        guard let session, !generating else { return }
        // Everything runs on the device in this build; the badge says why the cloud was not used.
        let badge: Badge
        if let report = try? privacyCheck(text: text), report.sensitive {
            badge = Badge(place: "On device",
                          why: "contains personal data: " + report.categories.map { "\($0)" }.joined(separator: ", "))
        } else {
            badge = Badge(place: "On device", why: "local-only policy: the cloud is off")
        }
        messages.append(Message(fromUser: true, text: text))
        messages.append(Message(fromUser: false, text: "", badge: badge))
        generating = true
        answering = Task {
            defer { generating = false }
            do {
                for try await piece in session.stream(text, params: try .defaults()) {
                    messages[messages.count - 1].text += piece
                }
            } catch {
                messages[messages.count - 1].text = "⚠ \(error)"
            }
        }
    }

    /// Cancelling the consuming task ends the stream, which cancels the native generation.
    func cancelAnswer() { answering?.cancel() }
}

private final class ProgressListener: DownloadListener, @unchecked Sendable {
    private let body: (DownloadProgress) -> Void
    init(_ body: @escaping (DownloadProgress) -> Void) { self.body = body }
    func onProgress(progress: DownloadProgress) throws { body(progress) }
}
