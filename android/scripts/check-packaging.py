#!/usr/bin/env python3
"""Consistency checks of the Android and iOS packaging, runnable without an Android SDK, Gradle or
Xcode (run by tests/run-all.sh through check-packaging.sh). Each check states the fact it relies on.

- Gradle wrapper: pinned to the Gradle the Android Gradle plugin in gradle/libs.versions.toml
  needs, with a SHA-256; ./gradlew verifies the download (tested against a local fake
  distribution: a good checksum runs it, a bad one is refused and nothing is unpacked).
- The library: ndkVersion pinned (r28+: 16 KB pages), preBuild depends on the jniLibs check,
  maven-publish applied; its ABIs = build-android-libs.sh's = the ABIs JNA's AAR ships
  libjnidispatch.so for (read from the AAR itself when Maven can fetch it).
- Consumer keep rules: what JNA reads by reflection, and no blanket keep of the whole package.
- The sample: targets the API level Google Play requires, model in noBackupFilesDir,
  edge-to-edge.
- iOS: PrivacyInfo.xcprivacy is a valid plist declaring the required-reason API categories the
  archive uses, bundled by both Package.swift files, which also link the Apple frameworks; the
  root Package.swift (consumers) has a URL + checksum binary target and a local-path variant.
"""
import os
import plistlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANDROID = ROOT / "android"
failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def read(p):
    return (ROOT / p).read_text()


# --- Gradle wrapper ---------------------------------------------------------------------------
# Minimum Gradle per Android Gradle plugin minor version (developer.android.com/build/releases/
# gradle-plugin#updating-gradle; 8.13: agp-8-13-0-release-notes, "Gradle minimum 8.13").
AGP_MIN_GRADLE = {"8.7": "8.9", "8.8": "8.10.2", "8.9": "8.11.1", "8.10": "8.11.1", "8.11": "8.13",
                  "8.12": "8.13", "8.13": "8.13"}
# Highest compile/target API each AGP supports (same release notes: 8.13 supports API 36).
AGP_MAX_API = {"8.13": 36}
# Google Play: new apps and updates target API 36 from 2026-08-31
# (support.google.com/googleplay/android-developer/answer/11926878).
PLAY_TARGET_API = 36

toml = read("android/gradle/libs.versions.toml")
agp = re.search(r'^agp\s*=\s*"([^"]+)"', toml, re.M).group(1)
agp_minor = ".".join(agp.split(".")[:2])
props = dict(
    line.split("=", 1) for line in read("android/gradle/wrapper/gradle-wrapper.properties").splitlines()
    if "=" in line and not line.startswith("#")
)
url = props.get("distributionUrl", "").replace("\\:", ":")
m = re.search(r"gradle-([0-9.]+)-(bin|all)\.zip$", url)
gradle = m.group(1) if m else None
check(gradle == AGP_MIN_GRADLE.get(agp_minor), f"wrapper Gradle {gradle} is the one AGP {agp} needs ({AGP_MIN_GRADLE.get(agp_minor)})")
check(re.fullmatch(r"[0-9a-f]{64}", props.get("distributionSha256Sum", "")) is not None, "wrapper distribution has a SHA-256")
check(os.access(ANDROID / "gradlew", os.X_OK), "android/gradlew is executable")


def gradlew_bootstrap_test():
    """./gradlew without the wrapper jar: verifies the checksum before running the download."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proj = tmp / "proj"
        (proj / "gradle" / "wrapper").mkdir(parents=True)
        shutil.copy(ANDROID / "gradlew", proj / "gradlew")
        dist = tmp / "gradle-8.13-bin.zip"
        with zipfile.ZipFile(dist, "w") as z:
            info = zipfile.ZipInfo("gradle-8.13/bin/gradle")
            info.external_attr = 0o755 << 16
            z.writestr(info, '#!/bin/sh\necho "fake gradle $*"\n')
        good = subprocess.run(["sha256sum", dist], capture_output=True, text=True).stdout.split()[0]
        env = dict(os.environ, GRADLE_USER_HOME=str(tmp / "home"))

        def run(sha):
            (proj / "gradle" / "wrapper" / "gradle-wrapper.properties").write_text(
                f"distributionUrl=file:{dist}\ndistributionSha256Sum={sha}\n")
            return subprocess.run([str(proj / "gradlew"), "tasks"], capture_output=True, text=True, env=env)

        bad = run("0" * 64)
        check(bad.returncode != 0 and "checksum mismatch" in bad.stderr
              and not list((tmp / "home").rglob("bin/gradle")), "gradlew refuses a distribution with the wrong SHA-256")
        ok = run(good)
        check(ok.returncode == 0 and "fake gradle" in ok.stdout and "tasks" in ok.stdout,
              "gradlew runs a verified distribution: " + (ok.stdout + ok.stderr).strip()[-200:])
        (proj / "gradle" / "wrapper" / "gradle-wrapper.properties").write_text(f"distributionUrl=file:{dist}\n")
        nosum = subprocess.run([str(proj / "gradlew")], capture_output=True, text=True, env=env)
        check(nosum.returncode != 0 and "distributionSha256Sum" in nosum.stderr, "gradlew refuses to run without a checksum")


if shutil.which("unzip") and shutil.which("sha256sum"):
    gradlew_bootstrap_test()
else:
    print("SKIPPED: gradlew bootstrap test (needs unzip and sha256sum)")

# --- The library --------------------------------------------------------------------------------
lib = read("android/edgewise/build.gradle.kts")
ndk = re.search(r'ndkVersion\s*=\s*"(\d+)\.[0-9.]+"', lib)
check(ndk is not None and int(ndk.group(1)) >= 28, f"ndkVersion pinned to r28+ (16 KB pages by default): {ndk and ndk.group(0)}")
check(re.search(r'tasks\.named\("preBuild"\)\s*\{\s*dependsOn\(checkJniLibs\)', lib) is not None, "preBuild depends on checkJniLibs")
check("dependsOn(cargoNdk)" in lib and "GradleException" in lib, "checkJniLibs runs cargoNdk and fails clearly without the .so files")
check("`maven-publish`" in lib and 'singleVariant("release")' in lib and 'from(components["release"])' in lib,
      "maven-publish publishes the release variant")
compile_sdk = int(re.search(r"compileSdk\s*=\s*(\d+)", lib).group(1))
check(compile_sdk <= AGP_MAX_API.get(agp_minor, 0), f"library compileSdk {compile_sdk} is supported by AGP {agp}")
abis_gradle = re.search(r"val edgewiseAbis = listOf\(([^)]*)\)", lib).group(1)
abis_gradle = sorted(re.findall(r'"([^"]+)"', abis_gradle))
script = read("android/scripts/build-android-libs.sh")
abis_script = sorted(re.search(r'ABIS="\$\{ABIS:-([^}]*)\}"', script).group(1).split())
triples = sorted(re.findall(r"^\s*\[([a-z0-9_-]+)\]=", script, re.M))
check(abis_gradle == abis_script == triples, f"ABIs agree: gradle {abis_gradle}, script {abis_script}, triples {triples}")

JNA_ABIS_DOC = ["arm64-v8a", "armeabi-v7a", "x86", "x86_64"]  # JNA's AAR (dist/android-*.jar per ABI)
jna_version = re.search(r'^jna\s*=\s*"([^"]+)"', toml, re.M).group(1)
aar = Path.home() / f".m2/repository/net/java/dev/jna/jna/{jna_version}/jna-{jna_version}.aar"
if not aar.exists() and shutil.which("mvn"):
    subprocess.run(["mvn", "-q", "-B", "dependency:get", f"-Dartifact=net.java.dev.jna:jna:{jna_version}:aar",
                    "-Dtransitive=false"], capture_output=True)
if aar.exists():
    with zipfile.ZipFile(aar) as z:
        jna_abis = sorted({n.split("/")[1] for n in z.namelist() if re.fullmatch(r"jni/[^/]+/libjnidispatch\.so", n)})
    # JNA's AAR also carries armeabi, mips and mips64, which the NDK dropped in r17 (NDK revision
    # history: "Support for ARMv5 (armeabi), MIPS, and MIPS64 has been removed") and which no
    # API 24+ device needs; apps filter them out (the sample does, see below).
    check(sorted(set(jna_abis) - {"armeabi", "mips", "mips64"}) == abis_gradle,
          f"our ABIs are JNA {jna_version}'s AAR ABIs {jna_abis} less the ones the NDK dropped")
else:
    print(f"SKIPPED: JNA {jna_version} AAR not available; comparing with the documented list")
    check(JNA_ABIS_DOC == abis_gradle, f"our ABIs are JNA's documented ABIs {JNA_ABIS_DOC}")

rules = read("android/edgewise/consumer-rules.pro")
rule_lines = [l.strip() for l in rules.splitlines() if l.strip() and not l.startswith("#")]
for needed in ["-keepattributes RuntimeVisibleAnnotations",
               "-keep class com.sun.jna.** { *; }",
               "-keep class * extends com.sun.jna.Structure { *; }",
               "-keep interface * extends com.sun.jna.Callback { *; }",
               "-keep class * implements com.sun.jna.Callback { *; }",
               "-dontwarn java.awt.**"]:
    check(needed in rule_lines, f"consumer rule: {needed}")
check(any("native <methods>" in l and "dev.edgewise" in l for l in rule_lines), "consumer rules keep the native method names")
check(not any(re.match(r"-keep(classmembers)? class dev\.edgewise\.\*\* \{ \*; \}", l) for l in rule_lines),
      "no blanket keep of dev.edgewise.** (the app's R8 may shrink what it does not use)")

# --- The sample ---------------------------------------------------------------------------------
sample = read("android/sample/build.gradle.kts")
target = int(re.search(r"targetSdk\s*=\s*(\d+)", sample).group(1))
sample_compile = int(re.search(r"compileSdk\s*=\s*(\d+)", sample).group(1))
check(target >= PLAY_TARGET_API, f"sample targetSdk {target} >= Google Play's {PLAY_TARGET_API}")
check(target <= sample_compile <= AGP_MAX_API.get(agp_minor, 0), f"sample compileSdk {sample_compile} within AGP {agp}")
sample_abis = re.search(r"abiFilters \+= listOf\(([^)]*)\)", sample)
check(sample_abis is not None and sorted(re.findall(r'"([^"]+)"', sample_abis.group(1))) == abis_gradle,
      "the sample packs exactly the library's ABIs (not JNA's armeabi/mips copies, which have no libedgewise.so)")
vm = read("android/sample/src/main/kotlin/dev/edgewise/sample/ChatViewModel.kt")
check("noBackupFilesDir" in vm and "filesDir.path" not in vm.replace("noBackupFilesDir", ""), "the model lives in noBackupFilesDir")
act = read("android/sample/src/main/kotlin/dev/edgewise/sample/MainActivity.kt")
check("enableEdgeToEdge()" in act and "safeDrawingPadding()" in act, "sample is edge-to-edge with inset padding")

# --- iOS ----------------------------------------------------------------------------------------
manifest = plistlib.loads((ROOT / "ios/Sources/Edgewise/PrivacyInfo.xcprivacy").read_bytes())
cats = {d["NSPrivacyAccessedAPIType"]: d["NSPrivacyAccessedAPITypeReasons"] for d in manifest["NSPrivacyAccessedAPITypes"]}
check(manifest.get("NSPrivacyTracking") is False, "privacy manifest: no tracking")
for cat, reason in [("NSPrivacyAccessedAPICategoryDiskSpace", "E174.1"),
                    ("NSPrivacyAccessedAPICategoryFileTimestamp", "C617.1"),
                    ("NSPrivacyAccessedAPICategorySystemBootTime", "35F9.1")]:
    check(reason in cats.get(cat, []), f"privacy manifest: {cat} {reason}")
frameworks = ["Metal", "QuartzCore", "CoreGraphics", "Foundation", "CoreFoundation"]
for pkg in ["Package.swift", "ios/Package.swift"]:
    text = read(pkg)
    check('resources: [.copy("PrivacyInfo.xcprivacy")]' in text, f"{pkg} bundles the privacy manifest")
    check(all(f'.linkedFramework("{f}")' in text for f in frameworks), f"{pkg} links {', '.join(frameworks)}")
    check('.binaryTarget(name: "EdgewiseFFI"' in text and ".macOS(" in text, f"{pkg}: EdgewiseFFI binary target, macOS platform")
root_pkg = read("Package.swift")
check(re.search(r'\.binaryTarget\(name: "EdgewiseFFI", url: releaseURL, checksum: releaseChecksum\)', root_pkg) is not None
      and re.search(r'let releaseChecksum = "[0-9a-f]{64}"', root_pkg) is not None
      and 'path: "ios/EdgewiseFFI.xcframework"' in root_pkg, "root Package.swift: release by URL + checksum, local-path variant")
modulemap = read("ios/Headers/EdgewiseFFI/module.modulemap")
check(all(f'link framework "{f}"' in modulemap for f in frameworks), "module map links the Apple frameworks")
xc = read("ios/build-xcframework.sh")
check(all(s in xc for s in ["aarch64-apple-darwin", "compute-checksum", "ditto -c -k", "--profile"]),
      "XCFramework script: macOS slice, zip, checksum, mobile profile")
cargo = read("Cargo.toml")
check(re.search(r'\[profile\.mobile\][^\[]*lto = "fat"', cargo) is not None, "Cargo profile `mobile` has LTO")

if failures:
    print(f"\n{len(failures)} packaging check(s) failed", file=sys.stderr)
    sys.exit(1)
print("\nall packaging checks passed")
