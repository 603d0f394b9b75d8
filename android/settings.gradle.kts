// Android build: the `edgewise` library (AAR) and the Compose sample app.
// Not built in this repository's CI (no Android SDK there); the Kotlin sources of the library are
// compiled and tested on a host JVM by jvm-tests/ (Maven).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "edgewise-android"
include(":edgewise", ":sample")
