// swift-tools-version:5.5
// The Swift binding of evstore: a system-library target over include/evstore.h and a
// thin Swift layer. Build libevstore first (`make lib` at the repository root).
import PackageDescription

let package = Package(
    name: "Evstore",
    products: [
        .library(name: "Evstore", targets: ["Evstore"]),
    ],
    targets: [
        // Finds -L/-I through pkg-config when PKG_CONFIG_PATH names build/lib/pkgconfig
        // (or after `make install`); otherwise pass -Xlinker -L<repo>/build/lib.
        .systemLibrary(name: "CEvstore", path: "Sources/CEvstore", pkgConfig: "evstore"),
        .target(name: "Evstore", dependencies: ["CEvstore"], path: "Sources/Evstore"),
    ]
)
