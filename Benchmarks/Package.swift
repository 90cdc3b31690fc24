// swift-tools-version:6.1
// The benchmark suites live in their own package so that the main build and CI stay light.
// Run: cd Benchmarks && swift package benchmark   (see docs/benchmarks.md)
import PackageDescription

let package = Package(
    name: "VigilBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "vigil", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Scoring",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Vigil", package: "vigil"),
                .product(name: "VigilSimulator", package: "vigil"),
            ],
            path: "Benchmarks/Scoring",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
