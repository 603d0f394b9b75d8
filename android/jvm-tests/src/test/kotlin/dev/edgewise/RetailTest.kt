package dev.edgewise

import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlin.math.sqrt
import kotlinx.coroutines.runBlocking
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.io.TempDir
import org.junit.jupiter.api.Assertions.fail

/**
 * Embedder, VectorIndex and Recommender through Kotlin with the real all-MiniLM-L6-v2
 * ($EDGEWISE_HOME/models/all-minilm-l6-v2, `edgewise models fetch all-minilm-l6-v2`).
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class RetailTest {
    companion object {
        private fun minilmDir(): File {
            val home = System.getenv("EDGEWISE_HOME")?.takeIf { it.isNotBlank() }
                ?: File(System.getProperty("user.home"), ".cache/edgewise").path
            val dir = File(home, "models/all-minilm-l6-v2")
            if (!File(dir, "model.safetensors").isFile) {
                val msg = "all-minilm-l6-v2 is missing at ${dir.path} (edgewise models fetch all-minilm-l6-v2)"
                val require = System.getenv("EDGEWISE_REQUIRE_MODEL")?.let { it.isNotEmpty() && it != "0" } ?: false
                if (require) fail<Unit>("EDGEWISE_REQUIRE_MODEL is set but $msg")
                System.err.println("SKIP (model-dependent tests): $msg")
                assumeTrue(false, msg)
            }
            return dir
        }

        /** One embedder for the class: the folder, so nothing is fetched from here. */
        val embedder: Embedder by lazy { Embedder.load(minilmDir().path, EmbeddingWeights.F32) }

        fun cosine(a: List<Float>, b: List<Float>): Double {
            var ab = 0.0; var aa = 0.0; var bb = 0.0
            for (i in a.indices) {
                ab += a[i] * b[i].toDouble(); aa += a[i] * a[i].toDouble(); bb += b[i] * b[i].toDouble()
            }
            return ab / (sqrt(aa) * sqrt(bb))
        }

        fun item(id: String, title: String, description: String, category: String, price: Double, inStock: Boolean = true) =
            CatalogItem(
                id, title, description,
                mapOf(
                    "category" to AttributeValue.Text(category),
                    "price" to AttributeValue.Number(price),
                    "in_stock" to AttributeValue.Flag(inStock),
                ),
            )

        val catalog = listOf(
            item("shoe-trail", "Trail running shoe", "Grippy lugged outsole for muddy forest trails", "running", 120.0),
            item("shoe-road", "Road running shoe", "Cushioned, light shoe for asphalt and long runs", "running", 110.0),
            item("shoe-race", "Racing flat", "Feather-light running shoe with a carbon plate for race day", "running", 180.0),
            item("watch-gps", "GPS running watch", "Tracks pace, distance and heart rate on every run", "running", 250.0),
            item("tea-green", "Sencha green tea", "Loose leaf Japanese green tea, grassy and fresh", "tea", 12.0),
            item("tea-matcha", "Ceremonial matcha", "Stone-ground green tea powder for whisking", "tea", 30.0),
            item("tea-mint", "Peppermint tea", "Caffeine-free herbal infusion of peppermint leaves", "tea", 8.0),
            item("tea-sold-out", "Gyokuro green tea", "Shade-grown Japanese green tea", "tea", 40.0, inStock = false),
            item("lamp", "Desk lamp", "Adjustable LED lamp for the home office", "office", 45.0),
            item("chair", "Office chair", "Ergonomic chair with lumbar support", "office", 300.0),
        )
    }

    @Test
    fun embeddingsMatchTheNumpyGoldensAndBatchesMatchSingles() {
        val texts = File(TestSupport.repoRoot, "tests/golden/minilm/texts.jsonl").readLines()
            .filter { it.isNotBlank() }.map(::JSONObject).associate { it.getInt("id") to it.getString("text") }
        val goldens = File(TestSupport.repoRoot, "tests/golden/minilm/embeddings_f32.jsonl").readLines()
            .filter { it.isNotBlank() }.map(::JSONObject).filter { !it.has("header") }
            .associate { o ->
                val a = o.getJSONArray("embedding")
                o.getInt("id") to (0 until a.length()).map { a.getDouble(it).toFloat() }
            }
        val ids = listOf(0, 9, 10, 11, 12, 13)
        assertEquals(384, embedder.dim())
        assertEquals(32, embedder.fingerprint().length)
        val batch = embedder.embedBatch(ids.map { texts.getValue(it) })
        for ((i, id) in ids.withIndex()) {
            val one = embedder.embed(texts.getValue(id))
            val c = cosine(one, goldens.getValue(id))
            assertTrue(c > 1 - 1e-6, "text $id: cosine $c to the NumPy reference")
            for (j in one.indices) assertEquals(one[j], batch[i][j], 1e-5f, "text $id dim $j: batch vs single")
        }
    }

    /**
     * A derived catalog entry (a GGUF no one publishes, converted here from the MiniLM folder entry)
     * through ModelDownload: made offline under a fresh home whose models/ holds only the folder
     * entry's zip and folder (links to the real ones), checked against the catalog's size and
     * sha256, and loadable. Before, ModelDownload tried to download it and failed (no source).
     */
    @Test
    fun modelDownloadMakesADerivedEntryOffline(@TempDir home: File) {
        val real = minilmDir()
        val models = File(home, "models").apply { mkdirs() }
        Files.createSymbolicLink(File(models, "all-minilm-l6-v2.zip").toPath(), File(real.parentFile, "all-minilm-l6-v2.zip").toPath())
        Files.createSymbolicLink(File(models, "all-minilm-l6-v2").toPath(), real.toPath())
        val id = "all-minilm-l6-v2-gguf-q8_0"
        val info = listModels().first { it.id == id }
        val phases = mutableListOf<DownloadPhase>()
        val dl = ModelDownload(id, home.path, defaultFetchConfig().copy(retries = 0, timeoutMs = 5_000))
        assertFalse(dl.isVerified())
        val path = dl.fetch(object : DownloadListener {
            override fun onProgress(progress: DownloadProgress) { phases += progress.phase }
        })
        assertEquals(modelPath(id, home.path), path)
        assertEquals(info.size, File(path).length())
        assertTrue(dl.isVerified())
        dl.verify()
        assertTrue(phases.isNotEmpty(), "progress reported")
        // The made file embeds like the folder (Q8_0 weights: cosine, not equality).
        val text = "red running shoes for muddy trails"
        val c = cosine(Embedder.load(path, EmbeddingWeights.F32).embed(text), embedder.embed(text))
        assertTrue(c > 0.99, "derived GGUF vs folder: cosine $c")
    }

    @Test
    fun theBackendIsChosenAsForChatAndAutoAgreesWithTheCpu() = runBlocking {
        val cpu = Embedder.open(minilmDir().path, EmbeddingWeights.F32, BackendPreference.CPU)
        assertEquals(BackendKind.CPU, cpu.backend())
        assertEquals(BackendKind.CPU, embedder.backend(), "load() keeps the CPU")
        // Auto: a hardware GPU that passes the self-test, else (no GPU, or lavapipe in CI) the CPU;
        // either way the vectors agree with the CPU's and the index key is the same.
        val auto = Embedder.open(minilmDir().path, EmbeddingWeights.F32, BackendPreference.AUTO)
        assertEquals(cpu.fingerprint(), auto.fingerprint())
        val text = "red running shoes for muddy trails"
        val c = cosine(cpu.embed(text), auto.embed(text))
        assertTrue(c > 0.9999, "auto (${auto.backend()}) vs cpu: cosine $c")
    }

    @Test
    fun vectorIndexFiltersAndRefusesBadInput() {
        val dir = Files.createTempDirectory("edgewise-index").toFile()
        try {
            val path = File(dir, "items.ewv").path
            val index = VectorIndex.open(path, embedder.fingerprint(), embedder.dim(), VectorStorage.INT8)
            val vectors = embedder.embedBatch(catalog.map { "${it.title}. ${it.description}" })
            catalog.zip(vectors).forEach { (it, v) -> index.upsert(it.id, v, it.attributes) }
            assertEquals(catalog.size, index.size())
            val q = embedder.embed("green tea leaves")
            val hits = index.search(q, 3, noFilter())
            assertEquals("tea-green", hits[0].id, "$hits")
            assertTrue(hits.all { it.id.startsWith("tea-") } && hits.any { it.id == "tea-sold-out" }, "$hits")
            val inStock = index.search(q, 3, noFilter().copy(inStock = true))
            assertTrue(inStock.all { it.id.startsWith("tea-") && it.id != "tea-sold-out" }, "$inStock")
            val cheap = index.search(q, 3, noFilter().copy(category = "tea", maxPrice = 20.0, inStock = true))
            assertTrue(cheap.all { it.id in setOf("tea-green", "tea-mint") }, "$cheap")
            assertTrue(index.delete("tea-green"))
            assertFalse(index.delete("tea-green"))
            assertThrows(EdgewiseException.InvalidParameter::class.java) { index.upsert("x", listOf(1f, 2f), emptyMap()) }
            assertThrows(EdgewiseException.InvalidParameter::class.java) {
                index.upsert("x", List(384) { Float.NaN }, emptyMap())
            }
            assertThrows(EdgewiseException.InvalidParameter::class.java) { index.search(q, 0, noFilter()) }
            // One handle per file; another model's vectors never mix in.
            index.close()
            assertThrows(EdgewiseException.IndexModelMismatch::class.java) {
                VectorIndex.open(path, "another-model", 384, VectorStorage.INT8)
            }
            VectorIndex.open(path, embedder.fingerprint(), 384, VectorStorage.INT8).use { reopened ->
                assertEquals(catalog.size - 1, reopened.size())
                assertEquals(AttributeValue.Text("tea"), reopened.attributes("tea-matcha")?.get("category"))
            }
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun recommendsFromEventsAndKeepsThemAcrossReopen() {
        val dir = Files.createTempDirectory("edgewise-shop").toFile()
        try {
            val view = { id: String, ts: Double -> ShopperEvent(id, ShopperEventKind.VIEW, ts, null) }
            val first = Recommender.open(dir.path, embedder, catalog)
            assertEquals(catalog.size, first.catalogSize())
            first.record(view("shoe-trail", 100.0))
            first.record(ShopperEvent("shoe-road", ShopperEventKind.PURCHASE, 110.0, null))
            first.record(ShopperEvent(null, ShopperEventKind.SEARCH, 120.0, "running gear"))
            val recs = first.recommend(3, noFilter())
            assertEquals(3, recs.size)
            val ids = recs.map { it.id }
            assertTrue(ids.none { it in setOf("shoe-trail", "shoe-road", "tea-sold-out") }, "$recs")
            assertTrue(ids.take(2).all { it in setOf("shoe-race", "watch-gps") }, "running first: $recs")
            assertTrue(recs.all { it.reason.startsWith("similar_to:") || it.reason.startsWith("matches_search:") || it.reason == "popular" })
            // The "why this pick" line agrees with the reason and names the item or the search.
            for (r in recs) {
                when {
                    r.reason.startsWith("similar_to:") -> assertTrue(r.why.startsWith("Similar to \u201c") && r.why.contains(", which you "), "$r")
                    r.reason.startsWith("matches_search:") -> assertEquals("Matches your search \u201crunning gear\u201d", r.why)
                    else -> assertTrue(r.why.startsWith("Popular") || r.why == "A pick to start with", "$r")
                }
            }
            assertThrows(EdgewiseException.UnknownItem::class.java) { first.record(view("no-such-item", 130.0)) }
            val found = first.search("japanese tea", 2, noFilter())
            assertTrue(found.all { it.id.startsWith("tea-") && it.reason == "matches_query" }, "$found")
            assertTrue(found.all { it.why == "Matches \u201cjapanese tea\u201d" }, "$found")
            val similar = first.similarItems("tea-green", 1)
            assertEquals("tea-matcha", similar.single().id, "$similar")
            first.close()

            // The events and the index survive closing; the catalog is not re-embedded.
            val second = Recommender.open(dir.path, embedder, catalog)
            assertEquals(3, second.export().size)
            assertEquals(ShopperEventKind.PURCHASE, second.export()[1].kind)
            assertEquals(ids, second.recommend(3, noFilter()).map { it.id })
            second.eraseAll()
            assertTrue(second.export().isEmpty())
            second.close()
            // The coroutine helpers: off the caller's thread, same answers.
            runBlocking {
                val third = Recommender.openIn(dir.path, embedder, catalog)
                val caller = Thread.currentThread()
                val (thread, recs) = third.offMain { Thread.currentThread() to recommend(1, SearchFilter.none()) }
                assertTrue(thread !== caller, "ran on the caller's thread")
                assertTrue(third.offMain { export() }.isEmpty(), "erased for good")
                assertEquals(listOf("popular"), recs.map { it.reason })
                assertEquals(embedder.embedBatch(listOf("tea")), embedder.embedAll(listOf("tea")))
                third.close()
            }
        } finally {
            dir.deleteRecursively()
        }
    }
}
