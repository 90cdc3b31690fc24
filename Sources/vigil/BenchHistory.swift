import ArgumentParser
import Foundation
import Vigil
import VigilCore
import VigilRedis
import VigilSimulator

/// Whether a transaction's feature cost grows with its entities' history: the same stream with
/// its merchants folded into fewer and fewer of them (so each merchant's 30-day window holds
/// hundreds of times more events), through each store, with the spread case as the baseline.
struct BenchHistory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-history",
        abstract: "Features per second as entities' history grows: the same stream over many, few and one merchant, per store.")

    @Option(help: "Transactions in the stream.") var transactions: Int = 40_000
    @Option(help: "Days the stream spans.") var days: Int = 30
    @Option(help: "Merchant counts to spread the stream over, the first being the baseline.") var merchants: String = "2000,4,1"
    @Option(help: "A store: memory, or a Redis URL (its database is FLUSHED). Repeatable.") var store: [String] = ["memory"]
    @Option(help: "Transactions per batch.") var batch: Int = 256
    @Option(help: "Feature spec (YAML); default: the built-in spec.") var features: String?

    struct Row {
        var store: String
        var merchants: Int
        var busiest: Int
        var txPerSecond: Double
        /// CPU of this process's one thread per transaction, second half: the store's client side
        /// (Redis's own CPU is in `redis`).
        var threadCPU: Double = 0
        var redis: (cpu: Double, command: Double, bytes: Double, commands: Double)?
        var roundTrips: Double?
        /// The Redis store's entity cache at the end: entities and bytes counted.
        var cache: (entities: Int, bytes: Int)?
        /// Redis at the end: the memory it holds, the logs this store compacted.
        var held: (bytes: Int, compactions: Int)?
        /// Seconds per transaction in each tenth of the stream (by batches), in stream order:
        /// whether the cost grows as the store fills.
        var tenths: [Double] = []
    }

    func run() throws {
        let counts = merchants.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }) else { throw ValidationError("--merchants takes positive counts, e.g. 2000,4,1") }
        let spec = try features.map { try FeatureSpec.load(path: $0) } ?? .default
        let plan = try FeaturePlan(spec: spec)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let base = Simulator(options: .init(transactions: transactions, days: days, seed: 23)).generate()
        print("vigil bench-history — \(base.count) transactions over \(days) days, batches of \(batch), \(plan.schema.count) features")
        var rows: [Row] = []
        for target in store {
            for m in counts {
                // Spread the transactions evenly over `m` merchants, keeping everything else.
                var stream = base
                var perMerchant: [String: Int] = [:]
                for i in stream.indices {
                    let folded = "merchant_\(KeyedHasher.insecureDevelopmentKey.hash(stream[i].id) % UInt64(m))"
                    stream[i].merchantID = folded
                    perMerchant[folded, default: 0] += 1
                }
                var row = try measure(stream, target: target, plan: plan, engine: engine)
                (row.merchants, row.busiest) = (m, perMerchant.values.max() ?? 0)
                rows.append(row)
                print(format(rows.last!, baseline: rows.first { $0.store == row.store }!))
            }
        }
    }

    func format(_ r: Row, baseline b: Row) -> String {
        var line = String(format: "%-7@ %5d merchants (busiest %6d tx)  %8.0f tx/s  cost per transaction ×%.2f of the first row's",
                          r.store as NSString, r.merchants, r.busiest, r.txPerSecond, b.txPerSecond / r.txPerSecond)
        line += String(format: "\n        features CPU (this thread, second half): %.2f µs/tx", r.threadCPU)
        if let first = r.tenths.first, first > 0 {
            line += "\n        cost of each tenth of the stream × the first tenth's: " + r.tenths.map { String(format: "%.2f", $0 / first) }.joined(separator: " ")
        }
        if let x = r.redis, let trips = r.roundTrips {
            line += String(format: "\n        Redis (second half): CPU %.2f µs/tx, command time %.2f µs/tx, %.0f bytes read/tx, %.2f commands/tx, %.2f round trips/batch",
                           x.cpu, x.command, x.bytes, x.commands, trips)
        }
        if let c = r.cache, c.entities > 0 {
            line += String(format: "\n        entity cache: %d entities in %.1f MiB, %.0f bytes per entity", c.entities, Double(c.bytes) / 1_048_576,
                           Double(c.bytes) / Double(c.entities))
            if let h = r.held {
                line += String(format: "\n        Redis holds %.1f MiB (%.0f bytes per entity, transaction records included); %d logs compacted",
                               Double(h.bytes) / 1_048_576, Double(h.bytes) / Double(c.entities), h.compactions)
            }
        }
        return line
    }

    func measure(_ stream: [Transaction], target: String, plan: FeaturePlan, engine: FeatureEngine) throws -> Row {
        let clock = ContinuousClock()
        let velocity: any VelocityStore
        var admin: RedisVelocityStore?
        if target == "memory" {
            velocity = InMemoryVelocityStore(plan: plan)
        } else {
            let url = try RedisURL(target)
            var slow = RedisConfiguration(url: url)
            slow.readTimeout = .seconds(30)
            admin = RedisVelocityStore(plan: plan, configuration: slow)
            _ = try admin!.command(["FLUSHDB"])
            // The production defaults (a 50 ms read timeout): a timeout fails the run.
            velocity = RedisVelocityStore(plan: plan, configuration: RedisConfiguration(url: url))
        }
        let batches = stride(from: 0, to: stream.count, by: batch).map { Array(stream[$0..<min($0 + batch, stream.count)]) }
        var tenths = [Double](repeating: 0, count: 10), counts = [Int](repeating: 0, count: 10)
        var before: BenchRedis.RedisStats?
        var tripsBefore = 0
        var cpu = 0.0
        for (k, b) in batches.enumerated() {
            if k == batches.count / 2, let admin {
                before = try BenchRedis.stats(admin)
                tripsBefore = (velocity as! RedisVelocityStore).roundTrips
            }
            let t0 = clock.now, c0 = threadCPUNanoseconds()
            _ = try engine.features(b, store: velocity)
            tenths[k * 10 / batches.count] += (clock.now - t0).seconds
            if k >= batches.count / 2 { cpu += Double(threadCPUNanoseconds() - c0) / 1e9 }
            counts[k * 10 / batches.count] += b.count
        }
        let secondHalf = Double(batches[(batches.count / 2)...].map(\.count).reduce(0, +))
        var row = Row(store: target == "memory" ? "memory" : "redis", merchants: 0, busiest: 0,
                      txPerSecond: Double(stream.count) / tenths.reduce(0, +), threadCPU: cpu * 1e6 / secondHalf,
                      tenths: zip(tenths, counts).map { $1 > 0 ? $0 / Double($1) : 0 })
        if let admin, let before {
            let after = try BenchRedis.stats(admin)
            let n = secondHalf
            // The INFO call itself is one command and a few kB: negligible against n transactions.
            row.redis = ((after.cpuSeconds - before.cpuSeconds) * 1e6 / n, (after.commandMicros - before.commandMicros) / n,
                         Double(after.outputBytes - before.outputBytes) / n, Double(after.commands - before.commands) / n)
            let store = velocity as! RedisVelocityStore
            row.roundTrips = Double(store.roundTrips - tripsBefore) / Double(batches.count - batches.count / 2)
            let usage = store.cacheUsage
            row.cache = (usage.entities, usage.bytes)
            row.held = (after.usedMemory, store.statistics.compactions)
            _ = try admin.command(["FLUSHDB"])
        }
        return row
    }
}
