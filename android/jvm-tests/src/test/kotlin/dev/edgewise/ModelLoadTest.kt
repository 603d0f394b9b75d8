package dev.edgewise

import java.io.File
import java.nio.file.Files
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir

/** Bad model files give typed exceptions, never a crash. */
class ModelLoadTest {
    private val cpu get() = EngineConfig.defaults().copy(backend = BackendPreference.CPU)

    @Test
    fun aFileThatIsNotGgufIsAModelLoadError(@TempDir dir: File) {
        val f = File(dir, "garbage.gguf").apply { writeBytes(ByteArray(4096) { (it * 31 + 7).toByte() }) }
        val e = assertThrows<EdgewiseException.ModelLoad> { Engine.load(f.path, cpu) }
        assertTrue(e.reason.isNotBlank())
    }

    @Test
    fun aTruncatedModelIsAModelLoadError(@TempDir dir: File) {
        val model = TestSupport.requireModel()
        val f = File(dir, "truncated.gguf")
        model.inputStream().use { input ->
            f.outputStream().use { out ->
                val buf = ByteArray(1 shl 20)
                var left = 8 shl 20 // the header and metadata, then the tensor data ends early
                while (left > 0) {
                    val n = input.read(buf, 0, minOf(buf.size, left))
                    if (n < 0) break
                    out.write(buf, 0, n)
                    left -= n
                }
            }
        }
        assertThrows<EdgewiseException.ModelLoad> { Engine.load(f.path, cpu) }
    }

    @Test
    fun aMissingFileIsAnIoError(@TempDir dir: File) {
        assertThrows<EdgewiseException.Io> { Engine.load(File(dir, "nope.gguf").path, cpu) }
    }

    @Test
    fun anEmptyFileIsATypedError(@TempDir dir: File) {
        val f = Files.createFile(dir.toPath().resolve("empty.gguf")).toFile()
        val e = assertThrows<EdgewiseException> { Engine.load(f.path, cpu) }
        assertTrue(e is EdgewiseException.ModelLoad || e is EdgewiseException.Io, "got $e")
    }
}
