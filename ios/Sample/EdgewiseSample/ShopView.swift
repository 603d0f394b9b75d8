// The shop screen: recommendations that update as the shopper taps items, "more like this" for the
// item in view, search by meaning, and each row's "why this pick" line. The Swift twin of the
// Android sample's ShopController + ShopScreen. Not compiled on our Linux machines (no Swift
// toolchain); kept in step with the Kotlin controller, which the JVM tests run.
import Edgewise
import Foundation
import SwiftUI

struct Pick: Identifiable, Equatable {
    let id: String
    let title: String
    let why: String
    let reason: String
}

@MainActor
final class ShopModel: ObservableObject {
    @Published private(set) var ready = false
    @Published private(set) var recommendations: [Pick] = []
    @Published private(set) var viewing: String?
    @Published private(set) var moreLikeThis: [Pick] = []
    @Published private(set) var results: [Pick] = []
    @Published private(set) var error: String?

    private var recommender: Recommender?
    private let titles: [String: String]
    static let picks: Int32 = 6

    static let catalog: [CatalogItem] = [
        item("shoe-trail", "Trail running shoe", "Grippy lugged outsole for muddy forest trails", "running", 120),
        item("shoe-road", "Road running shoe", "Cushioned, light shoe for asphalt and long runs", "running", 110),
        item("watch-gps", "GPS running watch", "Tracks pace, distance and heart rate on every run", "running", 250),
        item("jacket-rain", "Rain jacket", "Packable waterproof shell with taped seams", "outdoor", 140),
        item("boots-hike", "Hiking boots", "Waterproof leather boots for mountain trails", "outdoor", 170),
        item("tea-green", "Sencha green tea", "Loose leaf Japanese green tea, grassy and fresh", "tea", 12),
        item("tea-matcha", "Ceremonial matcha", "Stone-ground green tea powder for whisking", "tea", 30),
        item("tea-mint", "Peppermint tea", "Caffeine-free herbal infusion of peppermint leaves", "tea", 8),
        item("lamp", "Desk lamp", "Adjustable LED lamp for the home office", "office", 45),
        item("chair", "Office chair", "Ergonomic chair with lumbar support", "office", 300),
    ]

    private static func item(_ id: String, _ title: String, _ description: String, _ category: String, _ price: Double) -> CatalogItem {
        CatalogItem(id: id, title: title, description: description,
                    attributes: ["category": .text(value: category), "price": .number(value: price), "in_stock": .flag(value: true)])
    }

    init() {
        titles = Dictionary(uniqueKeysWithValues: Self.catalog.map { ($0.id, $0.title) })
    }

    private func pick(_ r: Recommendation) -> Pick {
        Pick(id: r.id, title: titles[r.id] ?? r.id, why: r.why, reason: r.reason)
    }

    /// Loads MiniLM (80 MB, fetched on first use into the app's Application Support, excluded
    /// from backups by the library) and opens the shopper's files.
    func start() {
        Task {
            do {
                let embedder = try await Embedder.open()
                let dir = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
                    .appendingPathComponent("shop").path
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                recommender = try await Recommender.open(in: dir, embedder: embedder, catalog: Self.catalog)
                ready = true
                await refresh()
            } catch {
                self.error = "\(error)"
            }
        }
    }

    private var now: Double { Date().timeIntervalSince1970 }

    func refresh() async {
        guard let rec = recommender else { return }
        do {
            let recs = try await rec.offMain { try $0.recommend(k: Self.picks, filter: .none()) }
            recommendations = recs.map(pick)
        } catch { self.error = "\(error)" }
    }

    /// The shopper opened `id`: a view event, "more like this", fresh recommendations.
    func open(_ id: String) {
        guard let rec = recommender else { return }
        let ts = now
        Task {
            do {
                let (similar, recs) = try await rec.offMain { r in
                    try r.record(event: ShopperEvent(itemId: id, kind: .view, ts: ts, query: nil))
                    return (try r.similarItems(id: id, k: 4), try r.recommend(k: Self.picks, filter: .none()))
                }
                viewing = id
                moreLikeThis = similar.map(pick)
                recommendations = recs.map(pick)
            } catch { self.error = "\(error)" }
        }
    }

    func act(_ id: String, _ kind: ShopperEventKind) {
        guard let rec = recommender else { return }
        let ts = now
        Task {
            do {
                let recs = try await rec.offMain { r in
                    try r.record(event: ShopperEvent(itemId: id, kind: kind, ts: ts, query: nil))
                    return try r.recommend(k: Self.picks, filter: .none())
                }
                recommendations = recs.map(pick)
            } catch { self.error = "\(error)" }
        }
    }

    /// Search by meaning; the query is recorded so that it shapes recommendations too.
    func search(_ query: String) {
        let q = query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let rec = recommender, !q.isEmpty else { return }
        let ts = now
        Task {
            do {
                let (found, recs) = try await rec.offMain { r in
                    let found = try r.search(query: q, k: Self.picks, filter: .none())
                    try r.record(event: ShopperEvent(itemId: nil, kind: .search, ts: ts, query: q))
                    return (found, try r.recommend(k: Self.picks, filter: .none()))
                }
                results = found.map(pick)
                recommendations = recs.map(pick)
            } catch { self.error = "\(error)" }
        }
    }

    func eraseMyData() {
        guard let rec = recommender else { return }
        Task {
            do {
                try await rec.offMain { try $0.eraseAll() }
                viewing = nil; moreLikeThis = []; results = []
                await refresh()
            } catch { self.error = "\(error)" }
        }
    }
}

struct ShopView: View {
    @StateObject private var shop = ShopModel()
    @State private var query = ""

    var body: some View {
        List {
            if !shop.ready {
                if let e = shop.error { Text("Failed: \(e)").foregroundColor(.red) }
                Button("Open the shop (downloads MiniLM, 80 MB)") { shop.start() }
            } else {
                HStack {
                    TextField("Search by meaning", text: $query).textFieldStyle(.roundedBorder)
                    Button("Search") { shop.search(query) }
                }
                if !shop.results.isEmpty {
                    Section("Results") { ForEach(shop.results) { PickRow(pick: $0, shop: shop) } }
                }
                if let v = shop.viewing {
                    Section("More like \(ShopModel.catalog.first { $0.id == v }?.title ?? v)") {
                        ForEach(shop.moreLikeThis) { PickRow(pick: $0, shop: shop) }
                    }
                }
                Section("For you") { ForEach(shop.recommendations) { PickRow(pick: $0, shop: shop) } }
                Button("Erase my shopping data", role: .destructive) { shop.eraseMyData() }
            }
        }
    }
}

private struct PickRow: View {
    let pick: Pick
    @ObservedObject var shop: ShopModel

    var body: some View {
        VStack(alignment: .leading, spacing: 4) {
            Button(pick.title) { shop.open(pick.id) }
            // The "why this pick" line, from the signals that ranked it.
            Text(pick.why).font(.caption).foregroundColor(.secondary)
            HStack {
                Button("Add to cart") { shop.act(pick.id, .addToCart) }.buttonStyle(.bordered)
                Button("Not interested") { shop.act(pick.id, .dismiss) }.buttonStyle(.bordered)
            }
        }
    }
}
