// The sample's logic; mirrors android/sample/src/main/controller/dev/edgewise/sample/ChatController.kt
// (which the JVM tests run). Not compiled here (no Swift toolchain on our Linux machines).
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
    private var router: Router?
    private var history: [ChatMessage] = []
    private var answering: Task<Void, Never>?
    /// Set both to let the router send benign requests the user marks "ask the cloud" to an
    /// OpenAI-compatible endpoint; personal data never leaves the device.
    var cloud: CloudEndpoint?
    var cloudApiKey: String?

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
                let policy = cloud != nil ? try routerPolicyCloudAssist() : try routerPolicyLocalOnly()
                router = try Router(engine: e, sessionConfig: try .defaults(), policy: policy, cloud: cloud,
                                    cloudApiKey: cloudApiKey, dataDir: homeDir + "/router")
                state = .ready(try e.info())
            } catch {
                state = .failed("\(error)")
            }
        }
    }

    func cancelDownload() { try? download?.cancel() }

    /// Routes `text` (with the conversation so far) and streams the answer into the last message;
    /// `useCloud` is the user's "ask the cloud" request, honoured only when nothing is sensitive.
    func send(_ text: String, useCloud: Bool = false) {
        guard let router, !generating else { return }
        let conversation = history + [.user(text)]
        messages.append(Message(fromUser: true, text: text))
        messages.append(Message(fromUser: false, text: ""))
        generating = true
        answering = Task {
            defer { generating = false }
            do {
                let meta = RequestMeta(cloudRequested: useCloud, localMeanLogprob: nil)
                for try await event in router.stream(conversation, meta: meta, params: try .defaults()) {
                    switch event {
                    case .text(let piece): messages[messages.count - 1].text += piece
                    case .reset: messages[messages.count - 1].text = ""
                    case .done(let answer):
                        messages[messages.count - 1].text = answer.text
                        messages[messages.count - 1].badge = Self.badge(for: answer)
                        history += [.user(text), .assistant(answer.text)]
                    }
                }
            } catch {
                messages[messages.count - 1].text = "⚠ \(error)"
            }
        }
    }

    /// Where an answer came from and the router's main reason, in words.
    static func badge(for answer: RoutedAnswer) -> Badge {
        let place = answer.servedBy == .cloud ? "Cloud" : "On device"
        let reasons = answer.decision.reasons
        let why: String
        if reasons.contains(.sensitive) {
            why = "contains personal data: " + answer.decision.categories.map { "\($0)" }.joined(separator: ", ")
        } else if let fallback = answer.fallback {
            why = "the cloud failed (\(fallback.kind)); answered on the device"
        } else if reasons.contains(.cloudDisabled) {
            why = "local-only policy: the cloud is off"
        } else {
            why = reasons.map { "\($0)" }.joined(separator: ", ")
        }
        return Badge(place: place, why: why)
    }

    /// Cancelling the consuming task ends the stream, which cancels the native generation.
    func cancelAnswer() { answering?.cancel() }
}

private final class ProgressListener: DownloadListener, @unchecked Sendable {
    private let body: (DownloadProgress) -> Void
    init(_ body: @escaping (DownloadProgress) -> Void) { self.body = body }
    func onProgress(progress: DownloadProgress) throws { body(progress) }
}
