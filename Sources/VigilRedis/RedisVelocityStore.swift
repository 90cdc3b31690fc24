import Foundation
import Synchronization
import VigilCore
import VigilFeatures

/// Fails fast while Redis is known to be down, so a batch degrades at once instead of waiting a
/// connect timeout per batch; lets one trial request through after a cooldown that doubles on
/// each failed trial.
struct CircuitBreaker {
    enum State: Sendable, Equatable { case closed, open(until: ContinuousClock.Instant), halfOpen }
    var state: State = .closed
    var failures = 0
    var cooldown: Duration
    let threshold: Int
    let baseCooldown: Duration
    let maxCooldown: Duration

    init(threshold: Int, cooldown: Duration, maxCooldown: Duration) {
        self.threshold = threshold
        self.baseCooldown = cooldown
        self.cooldown = cooldown
        self.maxCooldown = maxCooldown
    }

    /// Whether a request may go out now.
    mutating func allow(now: ContinuousClock.Instant) -> Bool {
        switch state {
        case .closed, .halfOpen: return true
        case .open(let until):
            guard now >= until else { return false }
            state = .halfOpen
            return true
        }
    }

    mutating func succeeded() {
        state = .closed
        failures = 0
        cooldown = baseCooldown
    }

    mutating func failed(now: ContinuousClock.Instant) {
        failures += 1
        if state == .halfOpen {
            cooldown = min(cooldown * 2, maxCooldown)
            state = .open(until: now + cooldown)
        } else if failures >= threshold {
            state = .open(until: now + cooldown)
        }
    }

    var isOpen: Bool {
        if case .open = state { return true }
        return false
    }
}

/// The production velocity store: every daemon instance sees every event of an entity.
///
/// Layout (see `docs/redis.md`), all keys hash-tagged by entity so one entity lives in one slot:
/// - `P:e:{E:H}` — sorted set of the entity's events: score = event time (ms), member = 8-byte
///   transaction id hash (big-endian, so ties sort as in memory) + amount, latitude, longitude,
///   filter bits and the hashed tracked fields, packed. Trimmed to the entity's longest window
///   plus the allowed lateness, with a TTL of the same length.
/// - `P:f:{E:H}` — sorted set of the entity's transactions labelled fraud (score = time).
/// - `P:t:{I}` — the transaction record (time + entity keys), for idempotence and labels.
///
/// One pipelined round trip per batch: the entities' events are read (`ZRANGEBYSCORE`), the
/// batch's events written (`ZADD NX`, `SET NX`), trimmed and their TTLs refreshed, all in one
/// pipeline; the client then evaluates the batch in order with the same ``EntityKernel`` as the
/// in-memory store, applying the batch's own events locally as it goes. No Lua: Redis does only
/// O(log n) sorted-set work per command, and all aggregation happens client-side.
public final class RedisVelocityStore: VelocityStore {
    public let plan: FeaturePlan
    public let configuration: RedisConfiguration
    public let allowedLateness: Int64

    struct State: ~Copyable {
        var connection: any RedisTransport
        var breaker: CircuitBreaker
        var roundTrips = 0
    }
    let state: Mutex<State>

    public init(plan: FeaturePlan, configuration: RedisConfiguration, allowedLateness: Int64 = 86_400_000) {
        self.plan = plan
        self.configuration = configuration
        self.allowedLateness = allowedLateness
        state = Mutex(State(
            connection: configuration.url.cluster ? RedisClusterClient(configuration: configuration) : RedisConnection(configuration: configuration),
            breaker: CircuitBreaker(threshold: configuration.breakerThreshold, cooldown: configuration.breakerCooldown,
                                    maxCooldown: configuration.breakerMaxCooldown)))
    }

    /// Round trips made so far (for benchmarks and tests).
    public var roundTrips: Int { state.withLock { $0.roundTrips } }

    /// Redis Cluster redirections followed so far (MOVED, ASK); zeros on a single Redis.
    public var clusterRedirects: (moved: Int, ask: Int) {
        state.withLock { ($0.connection as? RedisClusterClient)?.redirects ?? (0, 0) }
    }

    /// True while the breaker is open: the scorer degrades without trying Redis.
    public var isCircuitOpen: Bool { state.withLock { $0.breaker.isOpen } }

    // MARK: Keys and encoding

    func entityKey(_ e: Int, _ key: UInt64) -> [UInt8] { Array("\(configuration.prefix):e:{\(e):\(KeyedHasher.hex(key))}".utf8) }
    func fraudKey(_ e: Int, _ key: UInt64) -> [UInt8] { Array("\(configuration.prefix):f:{\(e):\(KeyedHasher.hex(key))}".utf8) }
    func transactionKey(_ id: UInt64) -> [UInt8] { Array("\(configuration.prefix):t:{\(KeyedHasher.hex(id))}".utf8) }

    static func append(_ v: UInt64, bigEndian: Bool = false, to out: inout [UInt8]) {
        var x = bigEndian ? v.bigEndian : v.littleEndian
        withUnsafeBytes(of: &x) { out.append(contentsOf: $0) }
    }
    static func read(_ b: [UInt8], _ at: Int, bigEndian: Bool = false) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[at + k]) << (8 * UInt64(bigEndian ? 7 - k : k)) }
        return v
    }

    func member(_ batch: EventBatch, _ i: Int, _ e: Int) -> [UInt8] {
        var m: [UInt8] = []
        m.reserveCapacity(33 + 8 * plan.entities[e].tracked.count)
        Self.append(batch.ids[i], bigEndian: true, to: &m)
        Self.append(batch.amounts[i].bitPattern, to: &m)
        Self.append(batch.lats[i].bitPattern, to: &m)
        Self.append(batch.lons[i].bitPattern, to: &m)
        m.append(batch.filterBits[i * batch.entityCount + e])
        let base = i * batch.trackedTotal + batch.trackedOffsets[e]
        for k in 0..<plan.entities[e].tracked.count { Self.append(batch.tracked[base + k], to: &m) }
        return m
    }

    /// Rebuilds an entity's columns from `ZRANGEBYSCORE … WITHSCORES` and its fraud set.
    func events(_ reply: RedisReply, fraud: RedisReply, e: Int) throws(StoreError) -> EntityEvents {
        let trackedCount = plan.entities[e].tracked.count
        var ev = EntityEvents(trackedCount: trackedCount)
        guard case .array(let items) = reply, items.count % 2 == 0 else {
            throw StoreError(.protocolError, "unexpected ZRANGEBYSCORE reply: \(reply.errorMessage ?? "\(reply)")")
        }
        var fraudIDs = Set<UInt64>()
        if case .array(let f) = fraud {
            for case .string(let b) in f where b.count == 8 { fraudIDs.insert(Self.read(b, 0, bigEndian: true)) }
        }
        var k = 0
        while k < items.count {
            guard case .string(let m) = items[k], case .string(let score) = items[k + 1], m.count == 33 + 8 * trackedCount,
                let time = Double(String(decoding: score, as: UTF8.self))
            else { throw StoreError(.protocolError, "malformed event member") }
            let id = Self.read(m, 0, bigEndian: true)
            ev.times.append(Int64(time))
            ev.ids.append(id)
            ev.amounts.append(Double(bitPattern: Self.read(m, 8)))
            ev.lats.append(Double(bitPattern: Self.read(m, 16)))
            ev.lons.append(Double(bitPattern: Self.read(m, 24)))
            ev.filterBits.append(m[32])
            ev.labels.append(fraudIDs.contains(id) ? 2 : 0)
            for t in 0..<trackedCount { ev.tracked[t].append(Self.read(m, 33 + 8 * t)) }
            k += 2
        }
        return ev
    }

    // MARK: VelocityStore

    public func process(_ batch: EventBatch, into matrix: inout FeatureMatrix) throws(StoreError) {
        guard batch.count > 0 else { return }
        // Distinct entities of the batch and the earliest event time of each.
        struct Slot: Hashable { let e: Int; let key: UInt64 }
        var earliest: [Slot: Int64] = [:]
        var latest: [Slot: Int64] = [:]
        var order: [Slot] = []
        for i in 0..<batch.count {
            for e in 0..<batch.entityCount {
                let key = batch.keys[i * batch.entityCount + e]
                guard key != 0 else { continue }
                let s = Slot(e: e, key: key)
                if let t = earliest[s] {
                    earliest[s] = min(t, batch.times[i])
                    latest[s] = max(latest[s]!, batch.times[i])
                } else {
                    earliest[s] = batch.times[i]
                    latest[s] = batch.times[i]
                    order.append(s)
                }
            }
        }
        var commands: [[[UInt8]]] = []
        commands.reserveCapacity(order.count * 6 + batch.count * (1 + batch.entityCount))
        // Reads first: Redis runs the pipeline in order, so they see the state before this batch.
        for s in order {
            let from = String(earliest[s]! - plan.entities[s.e].retention)
            commands.append([Array("ZRANGEBYSCORE".utf8), entityKey(s.e, s.key), Array(from.utf8), Array("+inf".utf8), Array("WITHSCORES".utf8)])
            commands.append([Array("ZRANGEBYSCORE".utf8), fraudKey(s.e, s.key), Array(from.utf8), Array("+inf".utf8)])
        }
        let ttl = Array(String(plan.retention + allowedLateness).utf8)
        for i in 0..<batch.count {
            var record: [UInt8] = []
            Self.append(UInt64(bitPattern: batch.times[i]), to: &record)
            for e in 0..<batch.entityCount { Self.append(batch.keys[i * batch.entityCount + e], to: &record) }
            commands.append([Array("SET".utf8), transactionKey(batch.ids[i]), record, Array("PX".utf8), ttl, Array("NX".utf8)])
        }
        for i in 0..<batch.count {
            for e in 0..<batch.entityCount {
                let key = batch.keys[i * batch.entityCount + e]
                guard key != 0 else { continue }
                commands.append([Array("ZADD".utf8), entityKey(e, key), Array("NX".utf8), Array(String(batch.times[i]).utf8), member(batch, i, e)])
            }
        }
        for s in order {
            let keep = plan.entities[s.e].retention + allowedLateness
            let cutoff = Array("(\(latest[s]! - keep)".utf8)
            let ttlE = Array(String(keep).utf8)
            commands.append([Array("ZREMRANGEBYSCORE".utf8), entityKey(s.e, s.key), Array("-inf".utf8), cutoff])
            commands.append([Array("ZREMRANGEBYSCORE".utf8), fraudKey(s.e, s.key), Array("-inf".utf8), cutoff])
            commands.append([Array("PEXPIRE".utf8), entityKey(s.e, s.key), ttlE])
            commands.append([Array("PEXPIRE".utf8), fraudKey(s.e, s.key), ttlE])
        }
        let replies = try roundTrip(commands)

        var entities: [Slot: EntityEvents] = [:]
        for (k, s) in order.enumerated() {
            entities[s] = try events(replies[2 * k], fraud: replies[2 * k + 1], e: s.e)
        }
        let setBase = 2 * order.count
        for i in 0..<batch.count {
            if let m = replies[setBase + i].errorMessage { throw StoreError(.protocolError, "SET: \(m)") }
        }
        // Evaluate in batch order, exactly as the in-memory store does. SET NX answered nil: the
        // transaction was recorded before (a redelivery).
        batch.walk(plan: plan, lateness: allowedLateness, into: &matrix, duplicate: { replies[setBase + $0] == .null }) { e, key, body in
            body(&entities[Slot(e: e, key: key), default: EntityEvents(trackedCount: plan.entities[e].tracked.count)])
        }
    }

    @discardableResult
    public func apply(labels: [(id: UInt64, fraud: Bool)]) throws(StoreError) -> Int {
        let fraud = labels.filter(\.fraud)
        guard !fraud.isEmpty else { return 0 }
        let records = try roundTrip(fraud.map { [Array("GET".utf8), transactionKey($0.id)] })
        var commands: [[[UInt8]]] = []
        var matched = 0
        for (l, r) in zip(fraud, records) {
            guard case .string(let record) = r, record.count == 8 * (1 + plan.entities.count) else { continue }
            matched += 1
            let time = Int64(bitPattern: Self.read(record, 0))
            var member: [UInt8] = []
            Self.append(l.id, bigEndian: true, to: &member)
            for e in 0..<plan.entities.count {
                let key = Self.read(record, 8 * (1 + e))
                guard key != 0 else { continue }
                commands.append([Array("ZADD".utf8), fraudKey(e, key), Array("NX".utf8), Array(String(time).utf8), member])
                commands.append([Array("PEXPIRE".utf8), fraudKey(e, key), Array(String(plan.entities[e].retention + allowedLateness).utf8)])
            }
        }
        if !commands.isEmpty { _ = try roundTrip(commands) }
        return matched
    }

    /// One pipelined round trip through the breaker.
    func roundTrip(_ commands: [[[UInt8]]]) throws(StoreError) -> [RedisReply] {
        let result: Result<[RedisReply], StoreError> = state.withLock { s in
            let now = ContinuousClock.now
            guard s.breaker.allow(now: now) else {
                return .failure(StoreError(.unavailable, "circuit open: Redis failed \(s.breaker.failures) times in a row"))
            }
            let result = Result { () throws(StoreError) in try s.connection.pipeline(commands) }
            switch result {
            case .success:
                s.roundTrips += 1
                s.breaker.succeeded()
            case .failure:
                s.breaker.failed(now: ContinuousClock.now)
            }
            return result
        }
        return try result.get()
    }

    /// Sends arbitrary commands (tests, benchmarks, administration).
    public func command(_ args: [String]) throws(StoreError) -> RedisReply {
        try roundTrip([args.bytes])[0]
    }
}
