// The shop screen's logic, in plain Kotlin + coroutines (no Android types), so that the JVM test
// project compiles and runs it against the real library and MiniLM (android/jvm-tests,
// ShopControllerTest). The Compose screen (ShopScreen.kt) only renders [ShopController.state].
package dev.edgewise.sample

import dev.edgewise.CatalogItem
import dev.edgewise.Embedder
import dev.edgewise.Recommendation
import dev.edgewise.Recommender
import dev.edgewise.SearchFilter
import dev.edgewise.ShopperEvent
import dev.edgewise.ShopperEventKind
import dev.edgewise.none
import dev.edgewise.offMain
import dev.edgewise.openIn
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update

/**
 * A shop over [catalog] for one shopper: recommendations that update as the shopper taps items,
 * "more like this" for the item in view, and search by meaning. Every pick carries its reason and
 * the "why this pick" line. The shopper's events and the vectors stay in [dir] (app storage).
 * Every call runs off the caller's thread (the library's `offMain`).
 */
class ShopController private constructor(
    private val recommender: Recommender,
    private val catalog: Map<String, CatalogItem>,
    private val clock: () -> Double,
) : AutoCloseable {
    /** One row of the screen. */
    data class Pick(val id: String, val title: String, val why: String, val reason: String, val score: Float)

    data class State(
        val recommendations: List<Pick> = emptyList(),
        /** The item the shopper opened last, and items like it. */
        val viewing: String? = null,
        val moreLikeThis: List<Pick> = emptyList(),
        val query: String = "",
        val results: List<Pick> = emptyList(),
        val error: String? = null,
    )

    private val _state = MutableStateFlow(State())
    val state: StateFlow<State> = _state.asStateFlow()

    companion object {
        /** Opens (or reopens) the shop's files in [dir]; embeds new or changed items. */
        suspend fun open(
            dir: String,
            embedder: Embedder,
            catalog: List<CatalogItem>,
            clock: () -> Double = { System.currentTimeMillis() / 1000.0 },
        ): ShopController {
            val rec = Recommender.openIn(dir, embedder, catalog)
            return ShopController(rec, catalog.associateBy { it.id }, clock).also { it.refresh() }
        }

        const val PICKS = 6
        const val SIMILAR = 4
    }

    private fun pick(r: Recommendation) = Pick(r.id, catalog[r.id]?.title ?: r.id, r.why, r.reason, r.score)

    /** Recomputes the recommendations (after events recorded elsewhere, say). */
    suspend fun refresh() = guard {
        val recs = recommender.offMain { recommend(PICKS, SearchFilter.none()) }
        _state.update { it.copy(recommendations = recs.map(::pick), error = null) }
    }

    /** The shopper opened [id]: a view event, "more like this", fresh recommendations. */
    suspend fun open(id: String) = record(id, ShopperEventKind.VIEW, showSimilar = true)

    /** Add to cart, purchase or "not interested" on [id]. */
    suspend fun act(id: String, kind: ShopperEventKind) = record(id, kind, showSimilar = false)

    private suspend fun record(id: String, kind: ShopperEventKind, showSimilar: Boolean) = guard {
        val (similar, recs) = recommender.offMain {
            record(ShopperEvent(id, kind, clock(), null))
            val similar = if (showSimilar) similarItems(id, SIMILAR) else null
            similar to recommend(PICKS, SearchFilter.none())
        }
        _state.update { s ->
            s.copy(
                recommendations = recs.map(::pick),
                viewing = if (showSimilar) id else s.viewing,
                moreLikeThis = similar?.map(::pick) ?: s.moreLikeThis,
                error = null,
            )
        }
    }

    /** Search by meaning; the query is recorded so that it shapes recommendations too. */
    suspend fun search(query: String) = guard {
        val q = query.trim()
        if (q.isEmpty()) {
            _state.update { it.copy(query = "", results = emptyList()) }
            return@guard
        }
        val (found, recs) = recommender.offMain {
            val found = search(q, PICKS, SearchFilter.none())
            record(ShopperEvent(null, ShopperEventKind.SEARCH, clock(), q))
            found to recommend(PICKS, SearchFilter.none())
        }
        _state.update { it.copy(query = q, results = found.map(::pick), recommendations = recs.map(::pick), error = null) }
    }

    /** The shopper's data rights: forget every event. */
    suspend fun eraseMyData() = guard {
        recommender.offMain { eraseAll() }
        _state.value = State()
        refresh()
    }

    private inline fun guard(block: () -> Unit) {
        try {
            block()
        } catch (e: dev.edgewise.EdgewiseException) {
            // The message names no item text or query (the library's rule).
            _state.update { it.copy(error = e.message ?: e.javaClass.simpleName) }
        }
    }

    override fun close() = recommender.close()
}
