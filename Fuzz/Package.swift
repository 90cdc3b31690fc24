// swift-tools-version:6.0
// Coverage-guided fuzzing (libFuzzer) of the transaction decoder and the rule parser.
// Run: scripts/fuzz.sh [seconds]   (see docs/reliability.md)
import PackageDescription

let fuzz: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-parse-as-library"])]
let link: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]

let package = Package(
    name: "VigilFuzz",
    dependencies: [.package(name: "vigil", path: "..")],
    targets: [
        .executableTarget(name: "FuzzDecoder", dependencies: [.product(name: "Vigil", package: "vigil")],
                          path: "Sources/FuzzDecoder", swiftSettings: fuzz, linkerSettings: link),
        .executableTarget(name: "FuzzRules", dependencies: [.product(name: "Vigil", package: "vigil")],
                          path: "Sources/FuzzRules", swiftSettings: fuzz, linkerSettings: link),
    ]
)
