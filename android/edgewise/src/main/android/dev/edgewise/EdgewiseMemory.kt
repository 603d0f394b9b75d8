// Android-only: forwards the system's memory signals to Engine.trim. Compiled against Android 16's
// framework classes by android/jvm-tests/android-flavour (no Android SDK needed).
package dev.edgewise

import android.content.ComponentCallbacks2
import android.content.res.Configuration

/**
 * Register once, next to the engine: `context.applicationContext.registerComponentCallbacks(EdgewiseMemory(engine))`
 * (and `unregisterComponentCallbacks` before closing the engine), or call [trimLevelForAndroid]
 * from your own `onTrimMemory`. A trim is quick (it frees memory and advises the kernel; no I/O),
 * so it runs on the calling (main) thread.
 */
class EdgewiseMemory(private val engine: Engine) : ComponentCallbacks2 {
    override fun onTrimMemory(level: Int) {
        val trim = trimLevelForAndroid(level) ?: return
        try {
            engine.trim(trim)
        } catch (e: EdgewiseException) {
            // A closed engine or an internal failure: nothing to free, nothing to crash over.
        }
    }

    override fun onConfigurationChanged(newConfig: Configuration) = Unit

    @Deprecated("Deprecated in Android")
    override fun onLowMemory() {
        onTrimMemory(ComponentCallbacks2.TRIM_MEMORY_COMPLETE)
    }

}
