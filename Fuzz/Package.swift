// swift-tools-version:6.0
// Coverage-guided fuzzing (libFuzzer) of the transaction decoder and the rule parser.
// Run: scripts/fuzz.sh [seconds]   (see docs/reliability.md)
import PackageDescription

let fuzz: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-parse-as-library"])]
let link: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]

let package = Package(
    name: "VigilFuzz",
    dependencies: [.package(name: "vigil", path: "..")],
    targets: [
        .target(name: "FuzzSupport", path: "Sources/FuzzSupport", swiftSettings: fuzz),
        .executableTarget(name: "FuzzDecoder", dependencies: ["FuzzSupport", .product(name: "Vigil", package: "vigil")],
                          path: "Sources/FuzzDecoder", swiftSettings: fuzz, linkerSettings: link),
        .executableTarget(name: "FuzzRules", dependencies: ["FuzzSupport", .product(name: "Vigil", package: "vigil")],
                          path: "Sources/FuzzRules", swiftSettings: fuzz, linkerSettings: link),
    ]
)
