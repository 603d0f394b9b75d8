// Swift concurrency for the retail API (Embedder, VectorIndex, Recommender), mirroring the Kotlin
// helpers (android/edgewise/src/main/kotlin/dev/edgewise/Retail.kt): every native call of that API
// blocks (embedding a catalog takes seconds), so these run it on Edgewise's native queue, never on
// the caller's thread or Swift's cooperative pool. Not compiled on our Linux machines (no Swift
// toolchain); kept in step with the Kotlin layer, which the JVM tests exercise.
import Foundation

public extension SearchFilter {
    /// A filter with no condition.
    static func none() -> SearchFilter { noFilter() }
}

public extension Embedder {
    /// Loads an embedding model (a catalog id, fetched if missing, or a folder) on the native queue.
    /// `backend` as for the chat engine (`.cpu` by default here; `.auto` takes a GPU that passes a
    /// self-test, `.gpu` insists).
    static func open(model: String = "all-minilm-l6-v2", weights: EmbeddingWeights = .f32,
                     backend: BackendPreference = .cpu) async throws -> Embedder {
        try await edgewiseNativeCall { _ in try Embedder.loadOn(model: model, weights: weights, backend: backend) }
    }

    /// Vectors of `texts`, computed on the native queue.
    func embedAll(_ texts: [String]) async throws -> [[Float]] {
        try await edgewiseNativeCall { _ in try self.embedBatch(texts: texts) }
    }
}

public extension Recommender {
    /// Opens the recommender's files in `dir` over `catalog` on the native queue (new or changed
    /// items are embedded there).
    static func open(in dir: String, embedder: Embedder, catalog: [CatalogItem]) async throws -> Recommender {
        try await edgewiseNativeCall { _ in try Recommender.open(dir: dir, embedder: embedder, catalog: catalog) }
    }

    /// Runs `body` against this recommender on the native queue:
    /// `let picks = try await shop.offMain { try $0.recommend(k: 10, filter: .none()) }`.
    func offMain<T: Sendable>(_ body: @escaping @Sendable (Recommender) throws -> T) async throws -> T {
        try await edgewiseNativeCall { _ in try body(self) }
    }
}

public extension VectorIndex {
    /// Runs `body` against this index on the native queue.
    func offMain<T: Sendable>(_ body: @escaping @Sendable (VectorIndex) throws -> T) async throws -> T {
        try await edgewiseNativeCall { _ in try body(self) }
    }
}
