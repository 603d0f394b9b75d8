package dev.edgewise

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.file.Files
import java.security.MessageDigest
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout

/** ChatSession.save / Engine.restoreSession through Kotlin: a chat that survives the app being killed. */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class SessionFileTest {
    private val params = GenerationParams.greedy(12).copy(ignoreEos = true)

    @Test
    fun restoredSessionAnswersLikeTheUninterruptedOneWithoutPrefillingAgain() {
        val engine = TestSupport.engine
        val dir = Files.createTempDirectory("edgewise-session").toFile()
        try {
            val file = File(dir, "chat.ewsession")
            val a = TestSupport.newSession(maxContext = 1024)
            a.chat("Tell me about the lighthouse keeper who counted the ships. ".repeat(20), params, TestSupport.Collector())
            val cached = a.cachedTokens()
            assertTrue(cached > 200, "$cached")
            a.save(file.path)
            val uninterrupted = a.chat("What did he count?", params, TestSupport.Collector())

            val b = engine.restoreSession(file.path)
            assertEquals(cached, b.cachedTokens(), "the KV cache comes back")
            assertEquals(a.history().take(2), b.history())
            val out = TestSupport.Collector()
            val resumed = b.chat("What did he count?", params, out)
            assertEquals(uninterrupted.tokenIds, resumed.tokenIds)
            assertEquals(uninterrupted.meanLogprob, resumed.meanLogprob, 1e-5f, "the same computation on the same cache")
            assertEquals(uninterrupted.metrics.prefilledTokens, resumed.metrics.prefilledTokens)
            assertTrue(resumed.metrics.prefilledTokens < 30, "only the new message: ${resumed.metrics}")
            assertEquals(64, engine.modelId().length)
            a.close()
            b.close()
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun damagedTruncatedAndForeignFilesAreTypedErrors() {
        val engine = TestSupport.engine
        val dir = Files.createTempDirectory("edgewise-session").toFile()
        try {
            val file = File(dir, "chat.ewsession")
            TestSupport.newSession().use { s ->
                s.complete("The capital of France is", params, TestSupport.Collector())
                s.save(file.path)
            }
            val bytes = file.readBytes()
            val bad = File(dir, "bad.ewsession")
            fun restore(b: ByteArray): EdgewiseException {
                bad.writeBytes(b)
                return assertThrows(EdgewiseException::class.java) { engine.restoreSession(bad.path) }
            }
            assertTrue(restore(bytes.copyOf(bytes.size / 2)) is EdgewiseException.SessionFile)
            assertTrue(restore(ByteArray(0)) is EdgewiseException.SessionFile)
            assertTrue(restore(bytes.copyOf().also { it[it.size / 3] = (it[it.size / 3] + 1).toByte() }) is EdgewiseException.SessionFile)
            assertTrue(restore("not a session file at all, but long enough to have a header".toByteArray()) is EdgewiseException.SessionFile)
            // An intact file saved with another model (its model id rewritten, checksum fixed).
            val e = restore(withHeader(bytes) { it.replace(engine.modelId(), "1".repeat(64)) })
            assertTrue(e is EdgewiseException.SessionModelMismatch, "$e")
            assertFalse(e.message.orEmpty().contains("France"))
            assertTrue(assertThrows(EdgewiseException::class.java) { engine.restoreSession(File(dir, "missing").path) } is EdgewiseException.Io)
        } finally {
            dir.deleteRecursively()
        }
    }

    /** The file with its JSON header edited and its SHA-256 trailer recomputed. */
    private fun withHeader(bytes: ByteArray, edit: (String) -> String): ByteArray {
        val hlen = ByteBuffer.wrap(bytes, 12, 4).order(ByteOrder.LITTLE_ENDIAN).int
        val json = edit(String(bytes, 16, hlen, Charsets.UTF_8)).toByteArray(Charsets.UTF_8)
        val body = bytes.copyOfRange(0, 12) +
            ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(json.size).array() +
            json + bytes.copyOfRange(16 + hlen, bytes.size - 32)
        return body + MessageDigest.getInstance("SHA-256").digest(body)
    }
}
