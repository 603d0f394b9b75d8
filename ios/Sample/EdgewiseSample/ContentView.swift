import Edgewise
import SwiftUI

struct ContentView: View {
    @StateObject private var chat = ChatModel()
    @State private var input = ""

    var body: some View {
        VStack(alignment: .leading, spacing: 12) {
            switch chat.state {
            case .notDownloaded:
                Button("Download Gemma 3 270M (253 MB)") { chat.start() }
            case .downloading(let p):
                Text("\(String(describing: p.phase)) \(p.done >> 20) / \(p.total >> 20) MB")
                ProgressView(value: p.total > 0 ? Double(p.done) / Double(p.total) : 0)
                Button("Cancel") { chat.cancelDownload() }
            case .loading:
                ProgressView("Loading the model…")
            case .failed(let reason):
                Text("Failed: \(reason)").foregroundColor(.red)
                Button("Retry (resumes)") { chat.start() }
            case .ready(let info):
                Text("\(info.architecture) on \(String(describing: info.backend))").font(.caption)
                ScrollView {
                    LazyVStack(alignment: .leading, spacing: 8) {
                        ForEach(chat.messages) { MessageView(message: $0) }
                    }
                }
                HStack {
                    TextField("Message", text: $input).textFieldStyle(.roundedBorder)
                    if chat.generating {
                        Button("Stop") { chat.cancelAnswer() }
                    } else {
                        Button("Send") { chat.send(input); input = "" }
                            .disabled(input.trimmingCharacters(in: .whitespaces).isEmpty)
                    }
                }
            }
        }
        .padding()
    }
}

private struct MessageView: View {
    let message: ChatModel.Message

    var body: some View {
        VStack(alignment: .leading, spacing: 4) {
            Text(message.text)
            if let badge = message.badge {
                Text("\(badge.place) · \(badge.why)")
                    .font(.caption2)
                    .padding(.horizontal, 8).padding(.vertical, 2)
                    .background(Capsule().fill(Color.secondary.opacity(0.2)))
            }
        }
        .padding(10)
        .frame(maxWidth: .infinity, alignment: .leading)
        .background(RoundedRectangle(cornerRadius: 10).fill(message.fromUser ? Color.blue.opacity(0.15) : Color.gray.opacity(0.12)))
    }
}
