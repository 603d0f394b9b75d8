// swift-tools-version:5.9
// Edgewise for iOS and macOS, DEVELOPMENT variant: the XCFramework built locally by
// build-xcframework.sh (ios/EdgewiseFFI.xcframework, by path) plus the uniffi-generated Swift and
// a small async layer. Apps consume the package at the repository root instead (../Package.swift:
// the released XCFramework by URL + checksum). Both manifests declare the same targets; the
// module map, `ffi_module_name` in uniffi/uniffi.toml, the XCFramework and the binary target are
// all named `EdgewiseFFI` (checked by android/scripts/check-packaging.sh).
import PackageDescription

let package = Package(
    name: "Edgewise",
    platforms: [.iOS(.v13), .macOS(.v12)],
    products: [
        .library(name: "Edgewise", targets: ["Edgewise"]),
    ],
    targets: [
        .binaryTarget(name: "EdgewiseFFI", path: "EdgewiseFFI.xcframework"),
        .target(
            name: "Edgewise",
            dependencies: ["EdgewiseFFI"],
            path: "Sources/Edgewise",
            resources: [.copy("PrivacyInfo.xcprivacy")],
            // What the static library calls into (wgpu's Metal backend, objc2, CoreFoundation
            // time zones). Also in the module map (`link framework`), for apps that link the
            // XCFramework without SwiftPM.
            linkerSettings: [
                .linkedFramework("Metal"),
                .linkedFramework("QuartzCore"),
                .linkedFramework("CoreGraphics"),
                .linkedFramework("Foundation"),
                .linkedFramework("CoreFoundation"),
            ]
        ),
        .testTarget(name: "EdgewiseTests", dependencies: ["Edgewise"], path: "Tests/EdgewiseTests"),
    ]
)
