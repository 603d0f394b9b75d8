package dev.edgewise

import dev.edgewise.sample.ChatController
import dev.edgewise.sample.ChatController.ModelState
import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.Timeout
import org.junit.jupiter.api.io.TempDir

/** The Android sample's logic (android/sample/src/main/controller) against the real library. */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class SampleControllerTest {
    @Test
    fun downloadsLoadsStreamsAndBadgesAnswers(@TempDir home: File) = runBlocking {
        val model = TestSupport.requireModel()
        val info = defaultModel()
        val controller = ChatController(this, homeDir = home.path,
            engineConfig = EngineConfig.defaults().copy(backend = BackendPreference.CPU))
        // The file is already present (a link to the real model): fetch() only verifies its sha256,
        // with no network, and keeps its work files in the temporary home.
        val dest = File(modelPath(info.id, home.path)).apply { parentFile.mkdirs() }
        Files.createSymbolicLink(dest.toPath(), model.absoluteFile.toPath())
        val download = ModelDownload.custom(
            ArtifactSpec(info.id, info.size, info.sha256, listOf(ModelSource.Https("http://127.0.0.1:9/unused", null)), dest.path),
            defaultFetchConfig(),
        )
        val first = controller.start(download)
        // A double tap on "Download": the same job, not a second download of the same file.
        assertTrue(controller.start(download) === first, "a second tap reuses the running start")
        first.join()
        assertTrue(controller.start(download) === first, "after loading, start() does not load again")
        val ready = controller.model.value
        assertTrue(ready is ModelState.Ready, "$ready")

        controller.send("What is the capital of France?", GenerationParams.greedy(12))!!.join()
        val answer = controller.messages.value.last()
        assertTrue(answer.text.isNotBlank())
        assertEquals(ChatController.Badge("On device", "local-only policy: the cloud is off"), answer.badge)

        controller.send("Charge my card 4556 7375 8689 9855 please", GenerationParams.greedy(4))!!.join()
        assertEquals("contains personal data: payment card", controller.messages.value.last().badge?.why)

        // Stop mid-answer: the job ends and the controller is ready for the next message.
        val job = controller.send("Tell me a long story.", GenerationParams.greedy(400).copy(ignoreEos = true))!!
        withTimeout(120_000) { controller.messages.first { it.last().text.isNotEmpty() } }
        controller.cancelAnswer()
        job.join()
        assertEquals(false, controller.generating.value)
        assertEquals(6, controller.messages.value.size)
        controller.close()
    }
}
