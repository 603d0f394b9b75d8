// swift-tools-version:5.7
// Edgewise for iOS: the Rust library as an XCFramework (built by build-xcframework.sh) plus the
// uniffi-generated Swift and a small async layer. The module map, `ffi_module_name` in
// uniffi/uniffi.toml, the XCFramework and the binary target are all named `EdgewiseFFI`.
import PackageDescription

let package = Package(
    name: "Edgewise",
    platforms: [.iOS(.v13)],
    products: [
        .library(name: "Edgewise", targets: ["Edgewise"]),
    ],
    targets: [
        .binaryTarget(name: "EdgewiseFFI", path: "EdgewiseFFI.xcframework"),
        .target(name: "Edgewise", dependencies: ["EdgewiseFFI"], path: "Sources/Edgewise"),
    ]
)
