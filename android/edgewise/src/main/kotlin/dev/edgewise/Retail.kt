// Coroutine helpers for the retail API (Embedder, VectorIndex, Recommender). Every native call of
// that API blocks (embedding a catalog takes seconds): these run it on Dispatchers.Default
// (CPU-bound work), never on the caller's (main) thread. Pure Kotlin + kotlinx.coroutines, compiled
// by the Android library and by the JVM tests alike.
package dev.edgewise

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/** A filter with no condition; `SearchFilter.none().copy(maxPrice = 50.0)` to add some. */
fun SearchFilter.Companion.none(): SearchFilter = noFilter()

/**
 * Loads an embedding model (a catalog id, fetched if missing, or a folder) on [Dispatchers.IO];
 * [backend] as for the chat engine (`CPU` by default here; `AUTO` takes a GPU that passes a
 * self-test, `GPU` insists).
 */
suspend fun Embedder.Companion.open(
    model: String = "all-minilm-l6-v2",
    weights: EmbeddingWeights = EmbeddingWeights.F32,
    backend: BackendPreference = BackendPreference.CPU,
): Embedder = withContext(Dispatchers.IO) { loadOn(model, weights, backend) }

/**
 * Opens the recommender's files in [dir] over [catalog] on [Dispatchers.Default] (new or changed
 * items are embedded there).
 */
suspend fun Recommender.Companion.openIn(dir: String, embedder: Embedder, catalog: List<CatalogItem>): Recommender =
    withContext(Dispatchers.Default) { open(dir, embedder, catalog) }

/**
 * Runs [block] against this recommender on [Dispatchers.Default]:
 * `val picks = shop.offMain { record(event); recommend(10, SearchFilter.none()) }`.
 */
suspend fun <T> Recommender.offMain(block: Recommender.() -> T): T = withContext(Dispatchers.Default) { block() }

/** Runs [block] against this index on [Dispatchers.Default]. */
suspend fun <T> VectorIndex.offMain(block: VectorIndex.() -> T): T = withContext(Dispatchers.Default) { block() }

/** Vectors of [texts] computed on [Dispatchers.Default]. */
suspend fun Embedder.embedAll(texts: List<String>): List<List<Float>> =
    withContext(Dispatchers.Default) { embedBatch(texts) }
