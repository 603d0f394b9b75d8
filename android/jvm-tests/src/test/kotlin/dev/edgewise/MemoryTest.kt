package dev.edgewise

import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout

/** Engine.trim through Kotlin, and the onTrimMemory level mapping. */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class MemoryTest {
    @Test
    fun androidTrimLevelsMapToEngineLevels() {
        // ComponentCallbacks2: RUNNING_MODERATE 5, RUNNING_LOW 10, RUNNING_CRITICAL 15,
        // UI_HIDDEN 20, BACKGROUND 40, MODERATE 60, COMPLETE 80.
        assertNull(trimLevelForAndroid(0))
        assertEquals(TrimLevel.BACKGROUND, trimLevelForAndroid(5))
        assertEquals(TrimLevel.BACKGROUND, trimLevelForAndroid(10))
        assertEquals(TrimLevel.LOW, trimLevelForAndroid(15))
        assertEquals(TrimLevel.BACKGROUND, trimLevelForAndroid(20))
        for (level in listOf(40, 60, 80)) assertEquals(TrimLevel.CRITICAL, trimLevelForAndroid(level))
    }

    @Test
    fun trimFreesIdleCachesAndTheNextTurnGivesTheSameAnswer() {
        val engine = TestSupport.engine
        val session = TestSupport.newSession()
        val params = GenerationParams.greedy(8).copy(ignoreEos = true)
        val first = session.complete("The capital of France is", params, TestSupport.Collector())
        assertTrue(session.cachedTokens() > 0u)
        val bg = engine.trim(TrimLevel.BACKGROUND)
        assertTrue(bg.sessions >= 1 && bg.kvCacheBytes > 0, "$bg")
        assertEquals(0u, session.cachedTokens(), "the cache was released")
        val critical = engine.trim(TrimLevel.CRITICAL)
        assertTrue(critical.weightsReleased, "$critical")
        // Everything comes back on the next use, with the same answer.
        val again = session.complete("The capital of France is", params, TestSupport.Collector())
        assertEquals(first.tokenIds, again.tokenIds)
    }
}
