import ArgumentParser
import Foundation
import Vigil
import VigilRedis
import VigilSimulator

/// Redis cost per transaction of the velocity store against a naive baseline, in the same run.
struct BenchRedis: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-redis",
        abstract: "Measure the Redis store: transactions/s, round trips per batch and Redis CPU per transaction, against a naive baseline.")

    @Option(help: "A Redis to use; its database is FLUSHED.") var redis: String
    @Option(help: "Transactions through the store.") var transactions: Int = 120_000
    @Option(help: "Transactions through the naive baseline (one command per window per entity, one round trip each).")
    var naiveTransactions: Int = 3_000
    @Option(help: "Transactions per batch.") var batch: Int = 256

    /// Three entity types, five windows.
    static let spec = """
        entities:
          card: card_id
          device: device_id
          merchant: merchant_id
        aggregates:
          - entity: card
            windows: [1m, 5m, 1h, 1d, 7d]
            ops: [count, sum, mean]
          - entity: device
            windows: [1m, 5m, 1h, 1d, 7d]
            ops: [count, sum, mean]
          - entity: merchant
            windows: [1m, 5m, 1h, 1d, 7d]
            ops: [count, sum, mean]
        """

    struct RedisStats {
        var commandMicros: Double
        var cpuSeconds: Double
        var commands: Int
        /// Bytes Redis sent to its clients (what they read).
        var outputBytes: Int
        /// Bytes Redis holds (`used_memory`).
        var usedMemory: Int
    }

    static func stats(_ store: RedisVelocityStore) throws -> RedisStats {
        guard case .string(let raw) = try store.command(["INFO", "all"]) else { throw ValidationError("INFO failed") }
        var micros = 0.0, cpu = 0.0, commands = 0, output = 0, memory = 0
        for line in String(decoding: raw, as: UTF8.self).split(whereSeparator: \.isNewline) {
            if line.hasPrefix("cmdstat_"), let r = line.range(of: "usec=") {
                micros += Double(line[r.upperBound...].prefix { $0 != "," }) ?? 0
            } else if line.hasPrefix("used_cpu_sys:") || line.hasPrefix("used_cpu_user:") {
                cpu += Double(line.split(separator: ":")[1]) ?? 0
            } else if line.hasPrefix("total_commands_processed:") {
                commands = Int(line.split(separator: ":")[1]) ?? 0
            } else if line.hasPrefix("total_net_output_bytes:") {
                output = Int(line.split(separator: ":")[1]) ?? 0
            } else if line.hasPrefix("used_memory:") {
                memory = Int(line.split(separator: ":")[1]) ?? 0
            }
        }
        return RedisStats(commandMicros: micros, cpuSeconds: cpu, commands: commands, outputBytes: output, usedMemory: memory)
    }

    func run() throws {
        let plan = try FeaturePlan(spec: FeatureSpec.parse(Self.spec))
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        var configuration = RedisConfiguration(url: try RedisURL(redis))
        configuration.readTimeout = .seconds(5)  // FLUSHDB and INFO between the runs
        let store = RedisVelocityStore(plan: plan, configuration: configuration)
        // ~12k cards and devices, ~1.3k merchants per 1000/day: 10k+ entities per type for the default size.
        let stream = Simulator(options: .init(transactions: transactions, days: 10, seed: 31)).generate()
        let cards = Set(stream.compactMap(\.cardID)).count, devices = Set(stream.compactMap(\.deviceID)).count
        let merchants = Set(stream.compactMap(\.merchantID)).count
        print("stream: \(stream.count) transactions; entities: \(cards) cards, \(devices) devices, \(merchants) merchants; 5 windows each")

        _ = try store.command(["FLUSHDB"])
        _ = try store.command(["CONFIG", "RESETSTAT"])
        let before = try Self.stats(store)
        let trips0 = store.roundTrips
        let clock = ContinuousClock()
        let t0 = clock.now
        for start in stride(from: 0, to: stream.count, by: batch) {
            _ = try engine.features(Array(stream[start..<min(start + batch, stream.count)]), store: store)
        }
        let elapsed = clock.now - t0
        let after = try Self.stats(store)
        let n = Double(stream.count)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let batches = (stream.count + batch - 1) / batch
        let ours = (cmd: (after.commandMicros - before.commandMicros) / n, cpu: (after.cpuSeconds - before.cpuSeconds) * 1e6 / n,
                    commands: Double(after.commands - before.commands) / n)
        print(String(format: "vigil store:   %8.0f tx/s   %.2f round trips/batch   Redis command time %.2f µs/tx   Redis CPU %.2f µs/tx   %.1f commands/tx",
                     n / seconds, Double(store.roundTrips - trips0 - 1) / Double(batches), ours.cmd, ours.cpu, ours.commands))

        // Naive: for each transaction and entity, one ZRANGEBYSCORE per window and a ZADD, each its own round trip.
        _ = try store.command(["FLUSHDB"])
        _ = try store.command(["CONFIG", "RESETSTAT"])
        let nb = try Self.stats(store)
        let naive = Array(stream.prefix(naiveTransactions))
        let events = engine.events(for: naive)
        let t1 = clock.now
        for i in 0..<events.count {
            let t = events.times[i]
            for e in 0..<events.entityCount {
                let key = events.keys[i * events.entityCount + e]
                guard key != 0 else { continue }
                let name = "naive:\(e):\(KeyedHasher.hex(key))"
                for w in plan.entities[e].lanes.indices where plan.entities[e].lanes[w] > 0 {
                    let from = t - Int64(plan.entities[e].lanes[w])
                    if case .array(let members) = try store.command(["ZRANGEBYSCORE", name, String(from), "(\(t)"]) {
                        var sum = 0.0
                        for case .string(let m) in members { sum += Double(String(decoding: m.split(separator: 58).last ?? [], as: UTF8.self)) ?? 0 }
                        _ = sum
                    }
                }
                _ = try store.command(["ZADD", name, String(t), "\(KeyedHasher.hex(events.ids[i])):\(events.amounts[i])"])
            }
        }
        let naiveElapsed = clock.now - t1
        let na = try Self.stats(store)
        let m = Double(naive.count)
        let naiveSeconds = Double(naiveElapsed.components.seconds) + Double(naiveElapsed.components.attoseconds) / 1e18
        let base = (cmd: (na.commandMicros - nb.commandMicros) / m, cpu: (na.cpuSeconds - nb.cpuSeconds) * 1e6 / m,
                    commands: Double(na.commands - nb.commands) / m)
        print(String(format: "naive:         %8.0f tx/s   %.0f round trips/batch   Redis command time %.2f µs/tx   Redis CPU %.2f µs/tx   %.1f commands/tx",
                     m / naiveSeconds, base.commands * Double(batch), base.cmd, base.cpu, base.commands))
        print(String(format: "ratio naive/vigil: throughput %.1f×, Redis command time %.2f×, Redis CPU %.2f×, round trips %.0f×",
                     (n / seconds) / (m / naiveSeconds), base.cmd / ours.cmd, base.cpu / ours.cpu, base.commands * Double(batch)))
        print("(the naive baseline runs on the first \(naiveTransactions) transactions: per-transaction figures compare; its windows are emptier, which flatters it)")
        _ = try store.command(["FLUSHDB"])
    }
}
