package dev.edgewise

import dev.edgewise.sample.ShopController
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout

/**
 * The sample's shop screen logic (android/sample/src/main/controller/.../ShopController.kt) with
 * the real MiniLM: recommendations update as the shopper taps items, "more like this", search,
 * and every row's "why this pick" line.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class ShopControllerTest {
    @Test
    fun recommendationsFollowTheTapsWithWhyLines() = runBlocking {
        val embedder = RetailTest.embedder
        val dir = Files.createTempDirectory("edgewise-shop-screen").toFile()
        var now = 1000.0
        try {
            ShopController.open(dir.path, embedder, RetailTest.catalog, clock = { now }).use { shop ->
                // Cold start: no signal yet.
                val cold = shop.state.value
                assertNull(cold.error)
                assertEquals(ShopController.PICKS, cold.recommendations.size)
                assertTrue(cold.recommendations.all { it.why == "A pick to start with" }, "$cold")

                // Tapping a tea: more teas, each saying which item it is like.
                now += 10
                shop.open("tea-green")
                val s1 = shop.state.value
                assertEquals("tea-green", s1.viewing)
                assertEquals("tea-matcha", s1.moreLikeThis.first().id, "${s1.moreLikeThis}")
                assertTrue(s1.moreLikeThis.all { it.why == "Similar to \u201cSencha green tea\u201d" }, "${s1.moreLikeThis}")
                assertEquals("tea-matcha", s1.recommendations.first().id, "${s1.recommendations}")
                assertEquals("Similar to \u201cSencha green tea\u201d, which you viewed", s1.recommendations.first().why)
                assertTrue(s1.recommendations.none { it.id == "tea-green" || it.id == "tea-sold-out" })

                // Then running shoes, carted: the newest interest leads.
                now += 10
                shop.act("shoe-trail", ShopperEventKind.ADD_TO_CART)
                val s2 = shop.state.value
                assertEquals("tea-green", s2.viewing, "acting does not change the item in view")
                val first = s2.recommendations.first()
                assertTrue(first.id in setOf("shoe-road", "shoe-race", "watch-gps"), "$first")
                assertEquals("Similar to \u201cTrail running shoe\u201d, which you added to your cart", first.why)

                // Search by meaning: results, and the query shapes the recommendations.
                now += 10
                shop.search("something to light up my desk")
                val s3 = shop.state.value
                assertEquals("lamp", s3.results.first().id, "${s3.results}")
                assertEquals("Matches \u201csomething to light up my desk\u201d", s3.results.first().why)
                assertTrue(s3.recommendations.any { it.why.startsWith("Matches your search") }, "${s3.recommendations}")

                // The shopper's data rights: events gone, back to the cold start.
                shop.eraseMyData()
                assertTrue(shop.state.value.recommendations.all { it.why == "A pick to start with" })
            }
        } finally {
            dir.deleteRecursively()
        }
    }
}
