// Logging and model loading from descriptors, in plain Kotlin (compiled by the Android library and
// by the JVM test project). The Android-only pieces (logcat, assets, content URIs) are in
// src/main/android/dev/edgewise/EdgewiseAndroid.kt.
package dev.edgewise

/** A [LogSink] from a lambda, called on the thread that logged (keep it quick). */
fun logSink(onRecord: (LogRecord) -> Unit): LogSink = object : LogSink {
    override fun log(record: LogRecord) = onRecord(record)
}

/**
 * Sends Edgewise's log records (level, Rust module, message; never prompt or generated text) at
 * [level] and above to [onRecord]. Replaces any earlier sink; [clearLogSink] removes it.
 */
fun setLogSink(level: LogLevel, onRecord: (LogRecord) -> Unit) = setLogSink(logSink(onRecord), level)

/**
 * Loads the GGUF model in [length] bytes (to the end of the file when negative) at [offset] of the
 * open descriptor [fd], on [kotlinx.coroutines.Dispatchers.IO]. The descriptor is duplicated: close
 * yours when this returns.
 */
suspend fun Engine.Companion.openFd(
    fd: Int,
    offset: Long = 0,
    length: Long = -1,
    config: EngineConfig = EngineConfig.defaults(),
): Engine = kotlinx.coroutines.withContext(kotlinx.coroutines.Dispatchers.IO) { loadFd(fd, offset, length, config) }
