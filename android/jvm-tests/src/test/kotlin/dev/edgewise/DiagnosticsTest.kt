package dev.edgewise

import com.sun.jna.Library
import com.sun.jna.Native
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout

/** The foreign log sink, and loading a model from a file descriptor. */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class DiagnosticsTest {
    private val params = GenerationParams.greedy(6).copy(ignoreEos = true)

    @Test
    fun logRecordsReachTheKotlinSinkWithoutPromptText() {
        val engine = TestSupport.engine
        val records = CopyOnWriteArrayList<LogRecord>()
        setLogSink(LogLevel.DEBUG) { records += it }
        try {
            TestSupport.newSession().use { s ->
                s.complete("CANARY-7731 The capital of France is", params, TestSupport.Collector())
            }
            engine.trim(TrimLevel.BACKGROUND) // an info record
            assertTrue(records.any { it.level == LogLevel.DEBUG && it.target == "edgewise_core::session" && it.message.startsWith("generation:") }, "$records")
            assertTrue(records.any { it.level == LogLevel.INFO && it.message.startsWith("trim") }, "$records")
            assertFalse(records.any { "CANARY" in it.message || "France" in it.message }, "no prompt text in any record")

            // The level is the app's: at WARN the debug/info records stop.
            records.clear()
            setLogLevel(LogLevel.WARN)
            engine.trim(TrimLevel.BACKGROUND)
            assertEquals(emptyList<LogRecord>(), records.toList())

            // A sink that throws loses its record only; the call that logged goes on.
            setLogSink(LogLevel.DEBUG) { throw IllegalStateException("sink failure") }
            TestSupport.newSession().use { s ->
                assertEquals(6, s.complete("The capital of France is", params, TestSupport.Collector()).tokenIds.size)
            }
        } finally {
            clearLogSink()
        }
        records.clear()
        engine.trim(TrimLevel.BACKGROUND)
        assertEquals(emptyList<LogRecord>(), records.toList(), "nothing after clearLogSink")
    }

    /** libc's open/close through JNA: a real descriptor, as Android's ParcelFileDescriptor.fd is. */
    private interface LibC : Library {
        fun open(path: String, flags: Int): Int
        fun close(fd: Int): Int
    }

    @Test
    fun modelLoadsFromAFileDescriptorLikeFromItsPath() {
        val model = TestSupport.requireModel()
        val libc = Native.load("c", LibC::class.java)
        val fd = libc.open(model.path, 0) // O_RDONLY
        assertTrue(fd >= 0, "open failed")
        val want = TestSupport.newSession().use { it.complete("The capital of France is", params, TestSupport.Collector()).tokenIds }
        try {
            val config = EngineConfig.defaults().copy(backend = BackendPreference.CPU)
            Engine.loadFd(fd, 0, -1, config).use { engine ->
                assertEquals(TestSupport.engine.modelId(), engine.modelId())
                val got = engine.newSession(SessionConfig.defaults().copy(maxContext = 128)).use {
                    it.complete("The capital of France is", params, TestSupport.Collector()).tokenIds
                }
                assertEquals(want, got)
            }
            // Bad descriptors and regions: typed errors.
            val badFd = assertThrows(EdgewiseException::class.java) { Engine.loadFd(-1, 0, -1, config) }
            assertTrue(badFd is EdgewiseException.InvalidParameter && badFd.name == "fd", "$badFd")
            assertTrue(assertThrows(EdgewiseException::class.java) { Engine.loadFd(fd, 0, model.length() + 1, config) } is EdgewiseException.ModelLoad)
            assertTrue(assertThrows(EdgewiseException::class.java) { Engine.loadFd(fd, -5, -1, config) } is EdgewiseException.InvalidParameter)
        } finally {
            libc.close(fd)
        }
    }
}
