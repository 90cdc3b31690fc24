import ArgumentParser
import VigilCore
import VigilFeatures
import VigilRedis

/// `vigil redis-migrate`: converts entity logs kept as Redis streams into the current layout.
struct RedisMigrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis-migrate",
        abstract: "Convert the entity logs a Vigil before 2026-12-03 kept as Redis streams into the current layout.",
        discussion: """
            Stop every vigild of the prefix first. On Redis Cluster, run it against each master with a \
            redis:// URL. The password comes from VIGIL_REDIS_PASSWORD (or VIGIL_REDIS_PASSWORD_FILE).
            """)

    @Option(help: "Redis URL.") var store: String
    @Option(help: "Key prefix (store.prefix in vigild's configuration).") var prefix = "vigil"
    @Option(help: "Feature spec; default: the built-in spec (sets the TTL of a log that had none).") var spec: String?

    func run() throws {
        var url = try RedisURL(store)
        guard !url.cluster else { throw ValidationError("run it against each master of the cluster with a redis:// URL") }
        if let p = try Secret.string("VIGIL_REDIS_PASSWORD") { url.password = p }
        var configuration = RedisConfiguration(url: url)
        configuration.prefix = prefix
        configuration.readTimeout = .seconds(5)
        let plan = try FeaturePlan(spec: try spec.map { try FeatureSpec.load(path: $0) } ?? .default)
        let redis = RedisVelocityStore(plan: plan, configuration: configuration)
        let progress = Progress(label: "migrating")
        let report = try redis.migrateStreams { progress.show(count: $0.logs) }
        progress.done("\(report.logs) entity logs (\(report.entries) entries) converted; \(report.skipped) left as streams: "
                      + "their entities already had a log in the new layout")
    }
}
