// Memory pressure, platform-independent part (compiled by the JVM tests too): the mapping from
// Android's onTrimMemory levels to Engine.trim levels. The Android callback is in
// src/main/android/dev/edgewise/EdgewiseMemory.kt.
package dev.edgewise

/**
 * The [TrimLevel] for an Android `ComponentCallbacks2.onTrimMemory(level)` value, or null when
 * nothing should be freed. The constants are Android's (stable API values): RUNNING_MODERATE 5,
 * RUNNING_LOW 10, RUNNING_CRITICAL 15 (the app is in the foreground; deprecated in API 34),
 * UI_HIDDEN 20, BACKGROUND 40, MODERATE 60, COMPLETE 80 (the app is cached and may be killed;
 * since API 34 only UI_HIDDEN and BACKGROUND are delivered).
 *
 * UI hidden frees the idle KV caches; in the background the app is on the kill list, so the
 * model's weight pages go too (they are read again on the next generation); in the foreground,
 * low memory frees caches but keeps the weights the user is about to need.
 */
fun trimLevelForAndroid(level: Int): TrimLevel? = when {
    level >= 40 -> TrimLevel.CRITICAL     // TRIM_MEMORY_BACKGROUND, MODERATE, COMPLETE
    level >= 20 -> TrimLevel.BACKGROUND   // TRIM_MEMORY_UI_HIDDEN
    level >= 15 -> TrimLevel.LOW          // TRIM_MEMORY_RUNNING_CRITICAL
    level >= 5 -> TrimLevel.BACKGROUND    // TRIM_MEMORY_RUNNING_MODERATE, RUNNING_LOW
    else -> null
}
