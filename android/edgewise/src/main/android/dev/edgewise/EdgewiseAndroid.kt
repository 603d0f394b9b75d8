// Android-only: Edgewise's log records in logcat, and models loaded from assets or content URIs.
// Compiled against Android 16's framework classes by android/jvm-tests/android-flavour.
package dev.edgewise

import android.content.Context
import android.net.Uri
import android.util.Log

/**
 * Forwards Edgewise's Rust log records to logcat under [tag] (the message is prefixed with the
 * Rust module). Install once at start-up: `setLogSink(LogcatSink(), LogLevel.INFO)`.
 */
class LogcatSink(private val tag: String = "Edgewise") : LogSink {
    override fun log(record: LogRecord) {
        val msg = "${record.target}: ${record.message}"
        when (record.level) {
            LogLevel.ERROR -> Log.e(tag, msg)
            LogLevel.WARN -> Log.w(tag, msg)
            LogLevel.INFO -> Log.i(tag, msg)
            LogLevel.DEBUG -> Log.d(tag, msg)
            LogLevel.TRACE -> Log.v(tag, msg)
            LogLevel.OFF -> Unit
        }
    }
}

/**
 * Loads a model shipped as an asset (in the APK or an install-time asset pack). The asset must be
 * stored uncompressed (`androidResources { noCompress += "gguf" }`), or `openFd` throws
 * `FileNotFoundException`; it is memory-mapped in place, never copied. Blocking: call it off the
 * main thread (or use [Engine.Companion.openFd] with the descriptor yourself).
 */
fun Engine.Companion.loadAsset(context: Context, assetName: String, config: EngineConfig = EngineConfig.defaults()): Engine =
    context.assets.openFd(assetName).use { afd ->
        loadFd(afd.parcelFileDescriptor.fd, afd.startOffset, afd.length, config)
    }

/**
 * Loads a model from a content URI (Storage Access Framework, another app's provider). Blocking:
 * call it off the main thread.
 */
fun Engine.Companion.loadUri(context: Context, uri: Uri, config: EngineConfig = EngineConfig.defaults()): Engine {
    val pfd = context.contentResolver.openFileDescriptor(uri, "r")
        ?: throw EdgewiseException.ModelLoad("the content provider returned no descriptor for the model")
    return pfd.use { loadFd(it.fd, 0, -1, config) }
}
