// swift-tools-version:5.5
// The Swift binding of evstore: a system-library target over the installed evstore.h
// (found through pkg-config) and a thin Swift layer. Not built by this project's CI.
import PackageDescription

let package = Package(
    name: "Evstore",
    // AsyncSequence (EventSequence) needs Swift concurrency.
    platforms: [.macOS(.v10_15), .iOS(.v13)],
    products: [
        .library(name: "Evstore", targets: ["Evstore"]),
    ],
    targets: [
        // Finds -I and -L through pkg-config: after `make install PREFIX=...`, set
        // PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig (in the repository: build/lib/pkgconfig).
        .systemLibrary(name: "CEvstore", path: "Sources/CEvstore", pkgConfig: "evstore"),
        .target(name: "Evstore", dependencies: ["CEvstore"], path: "Sources/Evstore"),
    ]
)
