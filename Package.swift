// swift-tools-version:5.9
// The Edgewise Swift package as apps consume it (SwiftPM reads the manifest at the repository
// root): `.package(url: "<this repository>", from: "<version>")`, product `Edgewise`.
//
// Release: the XCFramework is the zip attached to the release, fetched by URL and verified by
// SwiftPM against `releaseChecksum` (a mismatch fails resolution). `ios/build-xcframework.sh
// --release <version> <download base URL>` builds the zip, computes its checksum and rewrites
// the two constants below; commit them with the tag.
// Development: set EDGEWISE_LOCAL_XCFRAMEWORK=1 (or open ios/Package.swift) to use
// ios/EdgewiseFFI.xcframework built by `ios/build-xcframework.sh` from this checkout. Until a
// first release is cut, the placeholder checksum selects the local framework too.
import Foundation
import PackageDescription

let releaseURL = "https://example.invalid/edgewise/releases/download/0.1.0/EdgewiseFFI.xcframework.zip"
let releaseChecksum = "0000000000000000000000000000000000000000000000000000000000000000"

let useLocalFramework = ProcessInfo.processInfo.environment["EDGEWISE_LOCAL_XCFRAMEWORK"] != nil
    || releaseChecksum.allSatisfy { $0 == "0" }

let ffi: Target = useLocalFramework
    ? .binaryTarget(name: "EdgewiseFFI", path: "ios/EdgewiseFFI.xcframework")
    : .binaryTarget(name: "EdgewiseFFI", url: releaseURL, checksum: releaseChecksum)

let package = Package(
    name: "Edgewise",
    platforms: [.iOS(.v13), .macOS(.v12)],
    products: [
        .library(name: "Edgewise", targets: ["Edgewise"]),
    ],
    targets: [
        ffi,
        .target(
            name: "Edgewise",
            dependencies: ["EdgewiseFFI"],
            path: "ios/Sources/Edgewise",
            resources: [.copy("PrivacyInfo.xcprivacy")],
            linkerSettings: [
                .linkedFramework("Metal"),
                .linkedFramework("QuartzCore"),
                .linkedFramework("CoreGraphics"),
                .linkedFramework("Foundation"),
                .linkedFramework("CoreFoundation"),
            ]
        ),
    ]
)
