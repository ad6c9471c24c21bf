// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "NocoBridge",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nocobridge", targets: ["nocobridge"]),
        .executable(name: "nocobridge-bench", targets: ["nocobridge-bench"]),
        .executable(name: "nocobridge-chaos", targets: ["nocobridge-chaos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The access plan operators write by hand is YAML (quoting, comments, flow lists).
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CMongoC", pkgConfig: "libmongoc-1.0", providers: [.apt(["libmongoc-dev"])]),
        // Pure model and decisions: no I/O, exhaustively unit-tested.
        .target(name: "SyncCore"),
        // The only importers of the C libraries.
        .target(name: "Postgres", dependencies: ["CLibPQ"]),
        .target(name: "Mongo", dependencies: ["CMongoC", "SyncCore"]),
        .target(
            name: "Bridge",
            dependencies: [
                "SyncCore", "Postgres", "Mongo",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // NocoDB's meta REST API (bases, tables, fields, views): discovery and provisioning.
        .target(
            name: "NocoDBMeta",
            dependencies: ["SyncCore", .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams")]
        ),
        // Version and the git commit built from (stamped by the plugin at build time).
        .target(name: "BuildInfo", plugins: ["BuildInfoPlugin"]),
        .plugin(name: "BuildInfoPlugin", capability: .buildTool()),
        // The HTTP status, health and metrics endpoint and the operator console (its HTML, JS
        // and CSS live in Assets/ and are embedded by Scripts/gen-assets.sh).
        .target(
            name: "StatusServer",
            dependencies: [
                "Bridge", "BuildInfo", "SyncCore", "Postgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Assets"]
        ),
        .executableTarget(
            name: "nocobridge",
            dependencies: [
                "Bridge", "BuildInfo", "SyncCore", "StatusServer", "Postgres", "Mongo", "NocoDBMeta",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Benchmark: raw database baselines and the bridge measured in the same run.
        .executableTarget(
            name: "nocobridge-bench",
            dependencies: ["Bridge", "SyncCore", "Postgres", "Mongo", .product(name: "Logging", package: "swift-log")]
        ),
        // Fault run: seeded load on both sides while the bridge and both servers are killed
        // and restarted; compares both sides with the expected state (Scripts/chaos.sh).
        .executableTarget(name: "nocobridge-chaos", dependencies: ["SyncCore", "Postgres", "Mongo"]),
        .testTarget(name: "SyncCoreTests", dependencies: ["SyncCore"]),
        .testTarget(name: "NocoDBMetaTests", dependencies: ["NocoDBMeta"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Bridge", "BuildInfo", "SyncCore", "Postgres", "Mongo", "StatusServer", "NocoDBMeta", .product(name: "CoreMetrics", package: "swift-metrics")]
        ),
    ]
)
