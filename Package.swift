// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "vigil",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Vigil", targets: ["Vigil"]),
        .library(name: "VigilSimulator", targets: ["VigilSimulator"]),
        .library(name: "VigilRedis", targets: ["VigilRedis"]),
        .library(name: "VigilKafka", targets: ["VigilKafka"]),
        .executable(name: "vigil", targets: ["vigil"]),
        .executable(name: "vigild", targets: ["vigild"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries, each wrapped by exactly one Swift module.
        .systemLibrary(name: "CXGBoost", path: "Sources/CXGBoost", pkgConfig: "xgboost",
                       providers: [.apt(["libxgboost-dev"])]),
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CRdKafka", path: "Sources/CRdKafka", pkgConfig: "rdkafka",
                       providers: [.apt(["librdkafka-dev"])]),

        // A compiler hint with no Swift spelling (cache prefetch), not a library.
        .target(name: "CPrefetch", path: "Sources/CPrefetch"),
        // The forest's walk sixteen rows to a vector: gathers have no Swift spelling either.
        .target(name: "CForest", path: "Sources/CForest"),

        // The pipeline, in order.
        .target(name: "VigilCore", dependencies: [.product(name: "Yams", package: "Yams")],
                swiftSettings: strict),
        .target(name: "VigilExpression", dependencies: ["VigilCore"], swiftSettings: strict),
        .target(name: "VigilFeatures",
                dependencies: [
                    "VigilCore", "VigilExpression", "CPrefetch", .product(name: "Yams", package: "Yams"),
                    .product(name: "DequeModule", package: "swift-collections"),
                ],
                swiftSettings: strict),
        .target(name: "VigilRedis", dependencies: ["VigilFeatures", "CHiredis"], swiftSettings: strict),
        .target(name: "VigilRules",
                dependencies: ["VigilCore", "VigilExpression", "VigilFeatures", .product(name: "Yams", package: "Yams")],
                swiftSettings: strict),
        .target(name: "VigilModels", dependencies: ["VigilCore", "CXGBoost", "CForest"], swiftSettings: strict),
        .target(name: "VigilDecision",
                dependencies: ["VigilCore", "VigilExpression", .product(name: "Yams", package: "Yams")],
                swiftSettings: strict),
        .target(name: "Vigil",
                dependencies: [
                    "VigilCore", "VigilFeatures", "VigilRules", "VigilModels", "VigilDecision",
                    .product(name: "Logging", package: "swift-log"),
                ],
                swiftSettings: strict),
        .target(name: "VigilSimulator", dependencies: ["VigilCore"], swiftSettings: strict),
        .target(name: "VigilBacktest", dependencies: ["Vigil"], swiftSettings: strict),
        .target(name: "VigilKafka", dependencies: ["CRdKafka"], swiftSettings: strict),
        // The synchronous scoring API (HTTP/JSON and gRPC), micro-batched into the same Scorer.
        .target(name: "VigilAPI",
                dependencies: [
                    "Vigil",
                    .product(name: "Hummingbird", package: "hummingbird"),
                    .product(name: "HTTPTypes", package: "swift-http-types"),
                    .product(name: "Prometheus", package: "swift-prometheus"),
                    .product(name: "Logging", package: "swift-log"),
                    .product(name: "DequeModule", package: "swift-collections"),
                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                    .product(name: "GRPCCore", package: "grpc-swift-2"),
                    .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                    .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                ],
                exclude: ["Proto"],
                swiftSettings: strict),
        // The daemon: Kafka in, verdicts out, admin HTTP. `vigild` is its thin command line.
        .target(name: "VigilDaemon",
                dependencies: [
                    "Vigil", "VigilCore", "VigilKafka", "VigilRedis", "VigilAPI",
                    .product(name: "Hummingbird", package: "hummingbird"),
                    .product(name: "Prometheus", package: "swift-prometheus"),
                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                    .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                    .product(name: "Logging", package: "swift-log"),
                    .product(name: "Yams", package: "Yams"),
                ],
                swiftSettings: strict),
        .executableTarget(name: "vigild",
                          dependencies: [
                            "Vigil", "VigilDaemon",
                            .product(name: "ArgumentParser", package: "swift-argument-parser"),
                            .product(name: "Logging", package: "swift-log"),
                          ],
                          swiftSettings: strict),
        .executableTarget(name: "vigil",
                          dependencies: [
                            "Vigil", "VigilCore", "VigilSimulator", "VigilBacktest", "VigilRedis", "VigilKafka", "VigilAPI",
                            .product(name: "GRPCCore", package: "grpc-swift-2"),
                            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                            .product(name: "ArgumentParser", package: "swift-argument-parser"),
                            .product(name: "Logging", package: "swift-log"),
                          ],
                          swiftSettings: strict),

        .testTarget(name: "VigilCoreTests", dependencies: ["VigilCore"], swiftSettings: strict),
        .testTarget(name: "VigilExpressionTests", dependencies: ["VigilExpression"], swiftSettings: strict),
        .testTarget(name: "VigilFeaturesTests", dependencies: ["VigilFeatures"], swiftSettings: strict),
        .testTarget(name: "VigilRulesTests", dependencies: ["VigilRules"], swiftSettings: strict),
        .testTarget(name: "VigilModelsTests", dependencies: ["VigilModels"], swiftSettings: strict),
        .testTarget(name: "VigilDecisionTests", dependencies: ["VigilDecision"], swiftSettings: strict),
        .target(name: "VigilTestSupport", dependencies: ["VigilRedis"], path: "Tests/VigilTestSupport", swiftSettings: strict),
        .testTarget(name: "VigilRedisTests", dependencies: ["VigilRedis", "Vigil", "VigilSimulator", "VigilTestSupport"], swiftSettings: strict),
        .testTarget(name: "VigilBacktestTests", dependencies: ["VigilBacktest", "VigilSimulator"], swiftSettings: strict),
        .testTarget(name: "VigilTests", dependencies: ["Vigil", "VigilSimulator", "VigilBacktest"],
                    swiftSettings: strict),
        .testTarget(name: "VigilAPITests", dependencies: ["VigilAPI", .product(name: "Yams", package: "Yams")], swiftSettings: strict),
        .testTarget(name: "VigilKafkaTests", dependencies: ["VigilKafka"], swiftSettings: strict),
        .testTarget(name: "VigilDaemonTests", dependencies: [
                        "VigilDaemon", "VigilAPI", "VigilKafka", "VigilRedis", "VigilSimulator", "VigilTestSupport",
                        .product(name: "GRPCCore", package: "grpc-swift-2"),
                        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                        .product(name: "Logging", package: "swift-log"),
                    ],
                    swiftSettings: strict),
    ]
)
