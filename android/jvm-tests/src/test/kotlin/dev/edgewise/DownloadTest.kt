package dev.edgewise

import com.sun.net.httpserver.HttpServer
import java.io.File
import java.net.InetAddress
import java.net.InetSocketAddress
import java.security.MessageDigest
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir

/**
 * ModelDownload through the bindings, against the JDK's HTTP server on loopback: progress, the
 * sha256 check, cancel. (Resume after a dropped connection is tested in core, in Rust.)
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DownloadTest {
    private val payload = ByteArray(3 shl 20) { (it * 7 + it / 4096).toByte() }
    private val sha256 = MessageDigest.getInstance("SHA-256").digest(payload).joinToString("") { "%02x".format(it) }
    private val server = HttpServer.create(InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0).apply {
        executor = Executors.newCachedThreadPool()
        createContext("/model.bin") { ex -> ex.sendResponseHeaders(200, payload.size.toLong()); ex.responseBody.use { it.write(payload) } }
        createContext("/corrupt.bin") { ex ->
            val bad = payload.copyOf().also { it[12345] = (it[12345] + 1).toByte() }
            ex.sendResponseHeaders(200, bad.size.toLong()); ex.responseBody.use { it.write(bad) }
        }
        createContext("/slow.bin") { ex ->
            ex.sendResponseHeaders(200, payload.size.toLong())
            ex.responseBody.use { out ->
                try {
                    for (chunk in payload.asList().chunked(64 * 1024)) {
                        out.write(chunk.toByteArray()); out.flush(); Thread.sleep(100)
                    }
                } catch (_: Exception) { /* the client went away */ }
            }
        }
        start()
    }
    private val base = "http://127.0.0.1:${server.address.port}"

    @AfterEach
    fun stop() = server.stop(0)

    private fun download(path: String, dest: File) = ModelDownload.custom(
        ArtifactSpec("test-model", payload.size.toLong(), sha256, listOf(ModelSource.Https("$base$path", null)), dest.path),
        defaultFetchConfig().copy(retries = 0, retryDelayMs = 10, timeoutMs = 10_000),
    )

    @Test
    fun fetchReportsProgressAndVerifies(@TempDir dir: File) {
        val dest = File(dir, "models/model.bin")
        val reports = mutableListOf<DownloadProgress>()
        val d = download("/model.bin", dest)
        assertFalse(d.isVerified())
        val path = d.fetch(object : DownloadListener {
            override fun onProgress(progress: DownloadProgress) { reports += progress }
        })
        assertEquals(dest.path, path)
        assertArrayEquals(payload, dest.readBytes())
        assertTrue(d.isVerified())
        d.verify()
        val downloading = reports.filter { it.phase == DownloadPhase.DOWNLOADING }
        assertTrue(downloading.size >= 2, "several progress reports: $reports")
        assertEquals(payload.size.toLong(), downloading.last().done)
        assertTrue(downloading.zipWithNext().all { (a, b) -> a.done <= b.done }, "monotonic")
    }

    @Test
    fun aCorruptedFileIsRejectedAndNotLeftInPlace(@TempDir dir: File) {
        val dest = File(dir, "models/model.bin")
        val e = assertThrows<EdgewiseException.Download> { download("/corrupt.bin", dest).fetch(object : DownloadListener {
            override fun onProgress(progress: DownloadProgress) {}
        }) }
        assertTrue(e.reason.contains("checksum"), e.reason)
        assertFalse(dest.exists())
    }

    @Test
    fun cancelStopsAFetch(@TempDir dir: File) {
        val dest = File(dir, "models/model.bin")
        val d = download("/slow.bin", dest)
        val started = CountDownLatch(1)
        val pool = Executors.newSingleThreadExecutor()
        try {
            val result = pool.submit<String> {
                d.fetch(object : DownloadListener {
                    override fun onProgress(progress: DownloadProgress) {
                        if (progress.phase == DownloadPhase.DOWNLOADING && progress.done > 0) started.countDown()
                    }
                })
            }
            assertTrue(started.await(60, TimeUnit.SECONDS))
            d.cancel()
            val e = assertThrows<java.util.concurrent.ExecutionException> { result.get(60, TimeUnit.SECONDS) }
            assertTrue(e.cause is EdgewiseException.Cancelled, "got ${e.cause}")
            assertFalse(dest.exists())
        } finally {
            pool.shutdownNow()
        }
    }

    @Test
    fun aThrowingListenerCancelsTheFetchWithItsError(@TempDir dir: File) {
        val e = assertThrows<EdgewiseException.Callback> {
            download("/model.bin", File(dir, "m.bin")).fetch(object : DownloadListener {
                override fun onProgress(progress: DownloadProgress) = throw IllegalStateException("listener bug")
            })
        }
        assertTrue(e.reason.contains("listener bug"), e.reason)
    }
}
