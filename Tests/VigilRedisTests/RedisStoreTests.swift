import Foundation
import VigilTestSupport
import Testing
@testable import Vigil
@testable import VigilRedis
import VigilSimulator

let paritySpec = """
    entities:
      card: card_id
      device: device_id
      merchant: merchant_id
    fields: [amount]
    aggregates:
      - entity: card
        windows: [1m, 10m, 1h]
        ops: [count, sum, mean, std, max, distinct(merchant_id)]
      - entity: card
        name: big
        filter: amount > 50
        windows: [10m]
        ops: [count, sum]
      - entity: device
        windows: [1h]
        ops: [count, distinct(card_id)]
      - entity: merchant
        windows: [10m, 1h]
        ops: [count, mean]
    profiles:
      - entity: card
        history: 1h
        features: [amount_zscore, amount_ratio, secs_since_last, distance_km, speed_kmh]
        first_seen: [device_id]
    risk:
      - entity: merchant
        windows: [1h]
      - entity: card
        windows: [10m]
        delay: 20m
    """

/// A stream with out-of-order events, duplicates (redeliveries), idle gaps and missing fields.
func hostileStream(count: Int, seed: UInt64) -> [Transaction] {
    var state = seed
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    var t: Int64 = 1_767_225_600_000
    var out: [Transaction] = []
    for i in 0..<count {
        t += Int64(next() % 30_000)
        if next() % 200 == 0 { t += 2 * 3_600_000 }  // everyone idle past every window
        var ts = t
        if next() % 8 == 0 { ts -= Int64(next() % 600_000) }  // late event
        let hasLoc = next() % 2 == 0
        let tx = Transaction(
            id: "t\(i)", timestamp: ts, amount: Double(next() % 20_000) / 100, cardID: next() % 15 == 0 ? nil : "4000\(next() % 20)",
            merchantID: next() % 5 == 0 ? nil : "m\(next() % 6)", deviceID: next() % 3 == 0 ? nil : "d\(next() % 8)",
            lat: hasLoc ? Double(next() % 120) - 60 : nil, lon: hasLoc ? Double(next() % 200) - 100 : nil)
        out.append(tx)
        if next() % 25 == 0, let prior = out.dropLast().randomElement(using: &SystemRandomNumberGeneratorStub.shared) { out.append(prior) }
    }
    return out
}

/// Deterministic stand-in so `randomElement` repeats across runs.
struct SystemRandomNumberGeneratorStub: RandomNumberGenerator {
    nonisolated(unsafe) static var shared = SystemRandomNumberGeneratorStub()
    var s: UInt64 = 42
    mutating func next() -> UInt64 {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return s
    }
}

@Suite(.serialized) struct RedisStoreTests {
    let plan = try! FeaturePlan(spec: FeatureSpec.parse(paritySpec))

    func runBoth(_ txs: [Transaction], redis: RedisVelocityStore, batch: Int, labelsEvery: Int = 0) throws -> (FeatureMatrix, FeatureMatrix) {
        try runBoth(txs, instances: [redis], batch: batch, labelsEvery: labelsEvery)
    }

    /// The in-memory store against Redis stores taking the batches (and label applications) in turn.
    func runBoth(
        _ txs: [Transaction], instances: [RedisVelocityStore], batch: Int, labelsEvery: Int = 0, afterBatch: () throws -> Void = {}
    ) throws -> (FeatureMatrix, FeatureMatrix) {
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let memory = InMemoryVelocityStore(plan: plan)
        var a = FeatureMatrix(schema: plan.schema, rows: txs.count), b = a
        var i = 0
        var n = 0
        while i < txs.count {
            let slice = Array(txs[i..<min(i + batch, txs.count)])
            let events = engine.events(for: slice)
            var ma = FeatureMatrix(schema: plan.schema, rows: slice.count), mb = ma
            try memory.process(events, into: &ma)
            try instances[n % instances.count].process(events, into: &mb)
            a.values.replaceSubrange((i * plan.schema.count)..<((i + slice.count) * plan.schema.count), with: ma.values)
            b.values.replaceSubrange((i * plan.schema.count)..<((i + slice.count) * plan.schema.count), with: mb.values)
            n += 1
            try afterBatch()
            if labelsEvery > 0, n % labelsEvery == 0 {
                let labels = txs[max(0, i - 200)..<i].filter { $0.amount > 150 }.map { (engine.idHash($0.id), true) }
                #expect(try memory.apply(labels: labels) == (try instances[(n / labelsEvery) % instances.count].apply(labels: labels)))
            }
            i += batch
        }
        return (a, b)
    }

    func expectIdentical(_ a: FeatureMatrix, _ b: FeatureMatrix) {
        var differences = 0
        for r in 0..<a.rows {
            for c in 0..<a.columns where a[r, c].bitPattern != b[r, c].bitPattern {
                if differences < 5 { Issue.record("row \(r) \(a.schema.names[c]): memory \(a[r, c]) redis \(b[r, c])") }
                differences += 1
            }
        }
        #expect(differences == 0)
    }

    @Test(arguments: [1, 17, 256])
    func parityWithTheInMemoryStore(batch: Int) throws {
        let server = try RedisServer()
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        let txs = hostileStream(count: 2500, seed: UInt64(batch))
        let (a, b) = try runBoth(txs, redis: redis, batch: batch, labelsEvery: 5)
        expectIdentical(a, b)
        // One round trip per batch (plus one per label application: read records, then write).
        let batches = (txs.count + batch - 1) / batch
        #expect(redis.roundTrips <= batches + 2 * (batches / 5))
    }

    /// Several instances sharing one Redis, taking batches and labels in turn, one of them with a
    /// cache so small it evicts all the time: every feature equals one in-memory store fed the
    /// same batches in the same order (each instance appends after catching up with the others,
    /// so all of them see each entity's log in one order). Logs are compacted as soon as they
    /// have a few hundred dead bytes, so instances keep meeting each other's seals.
    /// With `expiring`, sealed logs are deleted after every batch (as their TTL does an hour after
    /// their compaction) and every append also reads the epoch pointer (as after 30 minutes
    /// unused): the path that catches an instance up with a compaction whose sealed log is gone.
    @Test(arguments: [false, true])
    func instancesSharingRedisSeeOneLog(expiring: Bool) throws {
        let server = try RedisServer()
        var configuration = try RedisConfiguration.forTests(server.url)
        configuration.compactionBytes = 256
        if expiring { configuration.staleAfter = .zero }
        var tiny = configuration
        tiny.cacheBytes = 16 << 10
        let instances = [configuration, configuration, tiny].map { RedisVelocityStore(plan: plan, configuration: $0) }
        var sealedDeleted = 0
        let (a, b) = try runBoth(hostileStream(count: 4000, seed: 31), instances: instances, batch: 40, labelsEvery: 3) {
            guard expiring, case .array(let pointers) = try instances[0].command(["KEYS", "vigil:p:*"]) else { return }
            for case .string(let p) in pointers {
                guard case .string(let epoch) = try instances[0].command(["GET", String(decoding: p, as: UTF8.self)]),
                      let n = Int(String(decoding: epoch, as: UTF8.self)) else { continue }
                let log = String(decoding: p, as: UTF8.self).replacingOccurrences(of: "vigil:p:", with: "vigil:x:")
                for old in 0..<n { if case .integer(1) = try instances[0].command(["DEL", "\(log):\(old)"]) { sealedDeleted += 1 } }
            }
        }
        expectIdentical(a, b)
        #expect(!expiring || sealedDeleted > 0)
        #expect(instances[0].statistics.conflicts > 0 && instances[0].statistics.framesApplied > 0, "\(instances[0].statistics)")
        #expect(instances[2].cacheUsage.evictions > 0 && instances[2].cacheUsage.bytes <= 16 << 10 + 64 << 10)
        let compactions = instances.map(\.statistics.compactions)
        #expect(compactions[0] > 0 && compactions[1] > 0, "compactions: \(compactions)")
        // Reading the pointer with every append, an instance rarely lands behind a seal.
        #expect(expiring || instances.map(\.statistics.voidAppends).reduce(0, +) > 0, "appends that met another instance's seal")
        guard case .array(let pointers) = try instances[0].command(["KEYS", "vigil:p:*"]) else { Issue.record("KEYS"); return }
        #expect(!pointers.isEmpty, "compacted entities have an epoch pointer")
    }

    /// A busy entity read cold (a second instance, or after eviction) comes in bounded pieces and
    /// gives the same features as the instance that built it.
    @Test func longLogReadColdInPieces() throws {
        let server = try RedisServer()
        var configuration = try RedisConfiguration.forTests(server.url)
        configuration.readChunkBytes = 8 << 10
        let warm = RedisVelocityStore(plan: plan, configuration: configuration)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        var t: Int64 = 1_767_225_600_000
        let txs = (0..<3000).map { i -> Transaction in
            t += 1000
            return Transaction(id: "b\(i)", timestamp: t, amount: Double(i % 97), cardID: "c\(i % 50)", merchantID: "busy")
        }
        // Batches of 5: the busy merchant's log gets 600 frames, ~130 KB: more than ten reads' worth.
        for k in stride(from: 0, to: 2990, by: 5) { _ = try engine.features(Array(txs[k..<(k + 5)]), store: warm) }
        let last = Array(txs[2990...])
        let cold = RedisVelocityStore(plan: plan, configuration: configuration)
        let a = try engine.features(last, store: cold)
        let memory = InMemoryVelocityStore(plan: plan)
        _ = try engine.features(Array(txs[..<2990]), store: memory)
        let b = try engine.features(last, store: memory)
        expectIdentical(b, a)
        #expect(cold.roundTrips >= 10)
    }

    /// An entity that stays cached costs one append per batch and reads nothing back.
    @Test func cachedEntitiesReadNothing() throws {
        let server = try RedisServer()
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        var seen = Set<String>()
        let txs = hostileStream(count: 3000, seed: 12).filter { seen.insert($0.id).inserted }
        let (a, b) = try runBoth(Array(txs[..<1000]), redis: redis, batch: 100)
        expectIdentical(a, b)
        let cold = redis.statistics.coldReads
        _ = try runBoth(Array(txs[1000...]), redis: redis, batch: 100)
        #expect(redis.statistics.coldReads - cold <= 3, "entities read again: \(redis.statistics.coldReads - cold)")
        #expect(redis.statistics.conflicts == 0)
    }

    /// Redeliveries older than the allowed lateness: both stores trim per event, relative to the
    /// entity's newest prior event, so features stay identical and independent of batch size
    /// (this stream broke parity when Redis trimmed once per batch).
    @Test(arguments: [64, 500])
    func parityBeyondTheAllowedLateness(batch: Int) throws {
        let server = try RedisServer()
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        let (a, b) = try runBoth(hostileStream(count: 6000, seed: 77), redis: redis, batch: batch)
        expectIdentical(a, b)
    }

    /// The one script is the compaction, sent whole with `EVAL` (so `NOSCRIPT` cannot happen)
    /// and only when a log has a dead prefix: a stream within the retention runs none.
    @Test func usesNoScriptsOnTheBatchPath() throws {
        let server = try RedisServer()
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        let (a, b) = try runBoth(hostileStream(count: 1200, seed: 5), redis: redis, batch: 50, labelsEvery: 4)
        expectIdentical(a, b)
        guard case .string(let stats) = try redis.command(["INFO", "commandstats"]) else { Issue.record("INFO"); return }
        let text = String(decoding: stats, as: UTF8.self)
        #expect(text.contains("cmdstat_append"))
        #expect(!text.contains("cmdstat_eval"), "no scripts: \(text)")
        #expect(!text.contains("cmdstat_evalsha"))
    }

    @Test func redeliveryIsIdempotent() throws {
        let server = try RedisServer()
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        // In event-time order: a late event arriving between the two deliveries would rightly
        // change the features (it happened before), in either store.
        var seen = Set<String>()
        let txs = hostileStream(count: 400, seed: 9).sorted { $0.timestamp < $1.timestamp }.filter { seen.insert($0.id).inserted }
        let first = try engine.features(txs, store: redis)
        let card = engine.hasher.hash("40001") | 1
        let before = try redis.streamContents("vigil:x:{0:\(KeyedHasher.hex(card))}").events
        #expect(before.count > 1)
        let again = try engine.features(txs, store: redis)
        #expect(try redis.streamContents("vigil:x:{0:\(KeyedHasher.hex(card))}").events == before)
        expectIdentical(first, again)
    }

    /// Logs written in the stream layout (before 2026-12-03) are converted by `migrateStreams`, and
    /// the stream goes on with features identical to an in-memory store that saw all of it.
    @Test func streamsMigrateToTheCurrentLayout() throws {
        let server = try RedisServer()
        var configuration = try RedisConfiguration.forTests(server.url)
        configuration.compactionBytes = .max
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        var seen = Set<String>()
        let txs = hostileStream(count: 2000, seed: 21).filter { seen.insert($0.id).inserted }
        let half = txs.count / 2
        let before = RedisVelocityStore(plan: plan, configuration: configuration)
        _ = try engine.features(Array(txs[..<half]), store: before)
        // Rewrite every log as the old layout wrote it: a stream, one entry per frame.
        guard case .array(let keys) = try before.command(["KEYS", "vigil:x:*"]) else { Issue.record("KEYS"); return }
        var frames = 0
        for case .string(let key) in keys {
            guard case .string(let log) = try before.command(bytes: [Array("GET".utf8), key]) else { continue }
            let stream = Array(key.dropLast(2))
            var at = 0, id: UInt64 = 0
            while at < log.count {
                let size = RedisVelocityStore.Frame.payloadSize(log[...], at)
                id += 1
                _ = try before.command(bytes: [Array("XADD".utf8), stream, Array("0-\(id)".utf8), [log[at]],
                                              Array(log[(at + 5)..<(at + 5 + size)])])
                at += 5 + size
                frames += 1
            }
            _ = try before.command(bytes: [Array("PEXPIRE".utf8), stream, Array("3600000".utf8)])
            _ = try before.command(bytes: [Array("DEL".utf8), key])
        }
        let after = RedisVelocityStore(plan: plan, configuration: configuration)
        let report = try after.migrateStreams()
        #expect(report.logs == keys.count && report.entries == frames && report.skipped == 0, "\(report)")
        #expect(try after.migrateStreams().logs == 0, "nothing left to convert")
        guard case .array(let left) = try after.command(["KEYS", "vigil:x:*"]) else { Issue.record("KEYS"); return }
        for case .string(let key) in left {
            #expect(String(decoding: key, as: UTF8.self).hasSuffix("}:0"))
            guard case .integer(let ttl) = try after.command(bytes: [Array("PTTL".utf8), key]) else { continue }
            #expect(ttl > 0 && ttl <= 3_600_000, "the stream's TTL is kept")
        }
        let memory = InMemoryVelocityStore(plan: plan)
        _ = try engine.features(Array(txs[..<half]), store: memory)
        expectIdentical(try engine.features(Array(txs[half...]), store: memory), try engine.features(Array(txs[half...]), store: after))
    }

    @Test func keysAreHashedTaggedAndExpire() throws {
        let server = try RedisServer()
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let txs = hostileStream(count: 200, seed: 4)
        _ = try engine.features(txs, store: redis)
        guard case .array(let keys) = try redis.command(["KEYS", "*"]) else { Issue.record("no keys"); return }
        let names = keys.compactMap { if case .string(let b) = $0 { String(decoding: b, as: UTF8.self) } else { nil } }
        #expect(names.count > 20)
        for name in names {
            // `P:…:{tag}`, or a log `P:x:{tag}:epoch`.
            let tail = name.split(separator: "}", omittingEmptySubsequences: false).last ?? ""
            #expect(name.hasPrefix("vigil:") && name.contains("{") && (tail.isEmpty || (tail.hasPrefix(":") && Int(tail.dropFirst()) != nil)), "\(name)")
            for raw in Set(txs.compactMap(\.cardID)) { #expect(!name.contains(raw), "\(name) contains \(raw)") }
            guard name != "vigil:{gen}" else { continue }  // the generation: the one key without a TTL
            guard case .integer(let ttl) = try redis.command(["PTTL", name]) else { Issue.record("PTTL"); continue }
            #expect(ttl > 0 && ttl <= plan.retention + 86_400_000, "\(name) ttl \(ttl)")
        }
    }

    @Test func stoppedRedisOpensTheBreakerAndTheScorerDegradesThenRecovers() throws {
        let server = try RedisServer()
        let port = server.port
        var configuration = RedisConfiguration(url: try RedisURL(server.url))
        configuration.breakerCooldown = .milliseconds(100)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let scorer = try Scorer(configuration: ScorerConfiguration(modelDirectory: root + "/models/default"),
                                store: { RedisVelocityStore(plan: $0, configuration: configuration) })
        let redis = scorer.store as! RedisVelocityStore
        let stream = Simulator(options: .init(transactions: 3000, days: 1, seed: 8)).generate()
        #expect(scorer.score(Array(stream[0..<100])).allSatisfy { !$0.degraded })
        server.stop()
        for k in 0..<5 {
            let v = scorer.score(Array(stream[(100 + k * 10)..<(110 + k * 10)]))
            #expect(v.allSatisfy { $0.degraded && $0.reasons.contains { $0.kind == .degraded } })
        }
        #expect(redis.isCircuitOpen)
        // Open breaker: no connection attempt, so a degraded batch costs no timeout.
        let clock = ContinuousClock()
        let t0 = clock.now
        _ = scorer.score(Array(stream[200..<210]))
        #expect(clock.now - t0 < .milliseconds(150))
        let restarted = try RedisServer(port: port)
        defer { restarted.stop() }
        try? await_(milliseconds: 250)  // past the cooldown
        var recovered = false
        for k in 0..<20 where !recovered {
            recovered = scorer.score(Array(stream[(300 + k * 10)..<(310 + k * 10)])).allSatisfy { !$0.degraded }
            if !recovered { try? await_(milliseconds: 100) }
        }
        #expect(recovered && !redis.isCircuitOpen)
    }

    @Test func restartWithPersistenceKeepsParity() throws {
        let port = RedisServer.freePort()
        var server: RedisServer? = try RedisServer(extra: ["--appendonly", "yes", "--appendfsync", "always"], port: port)
        let dir = server!.directory
        // fsync on every write, beside the rest of the suite running in parallel.
        let configuration = try RedisConfiguration.forTests("redis://127.0.0.1:\(port)")
        let redis = RedisVelocityStore(plan: plan, configuration: configuration)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let memory = InMemoryVelocityStore(plan: plan)
        let txs = hostileStream(count: 1200, seed: 77)
        for (k, start) in stride(from: 0, to: txs.count, by: 100).enumerated() {
            if k == 6 {  // Redis restarts mid-stream, reloading its append-only file
                server!.stop()
                let pid = try RedisServer.spawn(["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", dir])
                defer { RedisServer.kill(pid) }
                try? await_(milliseconds: 300)
                let slice = Array(txs[start..<min(start + 100, txs.count)])
                var outcome: FeatureMatrix?
                for _ in 0..<20 where outcome == nil {  // reconnects by itself
                    outcome = try? engine.features(slice, store: redis)
                    if outcome == nil { try? await_(milliseconds: 150) }
                }
                let expected = try engine.features(slice, store: memory)
                expectIdentical(expected, try #require(outcome))
                server = nil
                return
            }
            let slice = Array(txs[start..<min(start + 100, txs.count)])
            expectIdentical(try engine.features(slice, store: memory), try engine.features(slice, store: redis))
        }
    }

    /// A Redis that may evict keys under memory pressure is reported, so vigild can warn at start.
    @Test func evictionIsReported() throws {
        let server = try RedisServer(extra: ["--user", "limited", "on", ">pw-for-test", "~vigil:*", "+@all", "-config"])
        let redis = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests(server.url))
        #expect(try redis.evictionCheck() == .safe)
        _ = try redis.command(["CONFIG", "SET", "maxmemory", "100mb"])
        #expect(try redis.evictionCheck() == .safe, "noeviction refuses writes instead")
        _ = try redis.command(["CONFIG", "SET", "maxmemory-policy", "volatile-lru"])
        #expect(try redis.evictionCheck() == .evicts(policy: "volatile-lru", maxmemory: 100 << 20))
        let limited = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests("redis://limited:pw-for-test@127.0.0.1:\(server.port)"))
        guard case .unknown(let why) = try limited.evictionCheck() else { Issue.record("CONFIG is not allowed to this user"); return }
        #expect(why.contains("NOPERM"), "\(why)")
    }

    @Test func urlsAndAuth() throws {
        let u = try RedisURL("redis://alice:s3cret@10.0.0.5:6380/2")
        #expect(u.endpoint == .tcp(host: "10.0.0.5", port: 6380) && u.user == "alice" && u.password == "s3cret" && u.database == 2)
        #expect(!u.description.contains("s3cret"))
        #expect(try RedisURL("unix:///run/redis.sock?db=3").endpoint == .unix(path: "/run/redis.sock"))
        #expect(throws: StoreError.self) { try RedisURL("http://x") }
        // An ACL user with a password.
        let server = try RedisServer(extra: ["--user", "vigil", "on", ">pw-for-test", "~vigil:*", "+@all", "--user", "default", "off"])
        let ok = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests("redis://vigil:pw-for-test@127.0.0.1:\(server.port)"))
        #expect(try ok.command(["PING"]) == .status("PONG"))
        let bad = RedisVelocityStore(plan: plan, configuration: try RedisConfiguration.forTests("redis://vigil:wrong@127.0.0.1:\(server.port)"))
        #expect { try bad.command(["PING"]) } throws: { e in "\(e)".contains("AUTH") && !"\(e)".contains("wrong") }
    }
}

func await_(milliseconds: Int) throws { usleep(UInt32(milliseconds * 1000)) }

@Suite("Redis Cluster", .serialized) struct RedisClusterTests {
    let plan = try! FeaturePlan(spec: FeatureSpec.parse(paritySpec))

    @Test("hash slots: CRC16 reference value and hash tags")
    func slots() {
        #expect(RedisClusterClient.crc16(Array("123456789".utf8)[...]) == 0x31C3)
        #expect(RedisClusterClient.slot(of: Array("{user1000}.following".utf8)) == RedisClusterClient.slot(of: Array("{user1000}.followers".utf8)))
        #expect(RedisClusterClient.slot(of: Array("foo{}{bar}".utf8)) == Int(RedisClusterClient.crc16(Array("foo{}{bar}".utf8)[...]) & 0x3FFF))
        #expect(RedisClusterClient.slot(of: Array("vigil:e:{0:ab}".utf8)) == RedisClusterClient.slot(of: Array("vigil:f:{0:ab}".utf8)))
        #expect(RedisClusterClient.redirect("MOVED 3999 127.0.0.1:6381")! == (false, "127.0.0.1", 6381))
        #expect(RedisClusterClient.redirect("ASK 3999 127.0.0.1:6381")! == (true, "127.0.0.1", 6381))
        #expect(RedisClusterClient.redirect("ERR wrong type") == nil)
    }

    @Test("parity on a three-master cluster, with a slot migration during the stream")
    func parityWithMigration() throws {
        let cluster = try RedisClusterFixture()
        var configuration = try RedisConfiguration.forTests(cluster.seedURL)
        configuration.readTimeout = .seconds(2)  // routing is under test here, not latency (three servers and a reshard on two cores)
        let store = RedisVelocityStore(plan: plan, configuration: configuration)
        let txs = hostileStream(count: 6000, seed: 77)
        let engine = FeatureEngine(plan: plan, hasher: .insecureDevelopmentKey)
        let memory = InMemoryVelocityStore(plan: plan)
        var mismatches = 0
        var reshard: ChildProcess?
        var i = 0
        var batches = 0
        while i < txs.count {
            let slice = Array(txs[i..<min(i + 64, txs.count)])
            let events = engine.events(for: slice)
            var a = FeatureMatrix(schema: plan.schema, rows: slice.count), b = a
            try memory.process(events, into: &a)
            try store.process(events, into: &b)
            for r in 0..<slice.count {
                for c in 0..<plan.schema.count where a[r, c].bitPattern != b[r, c].bitPattern {
                    if mismatches < 5 { Issue.record("batch \(batches) row \(r) (\(slice[r].id)) \(plan.schema.names[c]): memory \(a[r, c]) cluster \(b[r, c])") }
                    mismatches += 1
                }
            }
            batches += 1
            // Start moving a third of the slots while the stream runs.
            if batches == 10 { reshard = try cluster.reshard(from: 0, to: 1, slots: 3000) }
            if batches > 10, reshard?.isRunning == true { usleep(50_000) }  // spread the stream over the migration
            i += 64
        }
        let status = reshard?.wait(timeout: .seconds(120))
        #expect(status == 0, "reshard: \(reshard?.output.suffix(500) ?? "")")
        #expect(mismatches == 0)
        let r = store.clusterRedirects
        print("cluster redirects followed: MOVED \(r.moved), ASK \(r.ask)")
        #expect(r.moved + r.ask > 0, "the migration was seen by the client")
        // After the migration, reads and writes keep working with the refreshed map.
        let tail = hostileStream(count: 300, seed: 78).map { tx in
            var t = tx
            t.id = "late-" + tx.id
            t.timestamp += 40 * 86_400_000
            return t
        }
        let events = engine.events(for: tail)
        var a = FeatureMatrix(schema: plan.schema, rows: tail.count), b = a
        try memory.process(events, into: &a)
        try store.process(events, into: &b)
        #expect(zip(a.values, b.values).allSatisfy { $0.bitPattern == $1.bitPattern })
    }
}
