// A small Compose sample: model download with progress, streaming chat, cancel, and a badge
// saying where each answer came from and why. Uses only the API tested in android/jvm-tests.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "dev.edgewise.sample"
    // Google Play: new apps and updates must target API 36 (Android 16) since 2026-08-31
    // (support.google.com/googleplay/android-developer/answer/11926878); AGP 8.13 supports up to 36.
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.edgewise.sample"
        minSdk = 24
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
        // The ABIs the Edgewise AAR has libedgewise.so for. JNA's AAR also ships libjnidispatch.so
        // for armeabi, mips and mips64 (dropped by the NDK in r17); without this filter those
        // copies would be packed, and a device picking them would find no libedgewise.so.
        ndk { abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86", "x86_64") }
    }

    buildTypes {
        release {
            isMinifyEnabled = true // exercises the library's consumer ProGuard rules
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"))
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    // src/main/controller is plain Kotlin, also compiled and tested by ../jvm-tests; src/main/ui is
    // Compose without Android types, also compiled by ../jvm-tests against Compose for Desktop.
    sourceSets["main"].java.srcDirs("src/main/kotlin", "src/main/controller", "src/main/ui")

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures { compose = true }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    implementation(project(":edgewise"))
    implementation(platform(libs.compose.bom))
    implementation(libs.compose.ui)
    implementation(libs.compose.material3)
    implementation(libs.compose.ui.tooling.preview)
    implementation(libs.activity.compose)
    implementation(libs.lifecycle.viewmodel.compose)
    implementation(libs.lifecycle.runtime.compose)
}
