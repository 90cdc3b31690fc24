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

/// The production velocity store: every daemon instance sees every event of an entity, and each
/// keeps the windows of the entities it has seen lately in memory, so a batch moves only what
/// changed.
///
/// Layout (see `docs/redis.md`), all keys hash-tagged by entity so one entity lives in one slot:
/// - `P:x:{E:H}` — the entity's log, a stream. Each entry is one batch's events of the entity
///   (field `e`: packed events) or fraud labels (field `l`), with explicit ids `0-1`, `0-2`, …
///   Entries whose events are all older than the entity's retention plus the allowed lateness
///   are trimmed (`XTRIM MINID`); a TTL of the same length expires idle entities.
/// - `P:t:{I}` — the transaction record (time + entity keys), for idempotence and labels.
/// - `P:{gen}` — a random generation (the one key without a TTL), so a Redis that lost its data is noticed and caches dropped.
///
/// Sync protocol, one pipelined round trip per batch in the steady state: for a cached entity
/// whose log ends at `0-n`, append the batch's entry as `XADD … NOMKSTREAM 0-(n+1)`. Redis refuses
/// an id not above the stream's last, so success proves nobody appended since this process last
/// looked, and the cached windows are exact. A refusal means another instance appended: read
/// the entries after `0-n` (`XRANGE`), apply them, append again. An entity not cached is read
/// whole (`XRANGE - +`, bounded by its retention) while `XADD 0-1` creates its stream if it has
/// none. The features of a batch's events thus come from exactly the entries before the batch's
/// own in each entity's log: the same order for every instance. No Lua: Redis only appends and
/// reads ranges; all aggregation happens client-side, incrementally (``EntityState``).
public final class RedisVelocityStore: VelocityStore {
    public let plan: FeaturePlan
    public let configuration: RedisConfiguration
    public let allowedLateness: Int64

    struct State: ~Copyable {
        var connection: any RedisTransport
        var breaker: CircuitBreaker
        var roundTrips = 0
        var cache: EntityCache
        var generation: [UInt8]?
        /// `XTRIM`s decided after a batch, sent with the next one.
        var pendingTrims = RedisPipeline()
        var stats = SyncStatistics()
        /// The walk's working memory, kept across batches.
        var scratch: [WindowAggregates]
    }
    let state: Mutex<State>

    /// What the sync did so far (for benchmarks, tests and metrics).
    public struct SyncStatistics: Sendable {
        /// Entities read whole (not cached, evicted, or their stream disappeared).
        public var coldReads = 0
        /// Appends refused because another instance had appended first.
        public var conflicts = 0
        /// Entries of other instances (or of earlier failed batches) applied to the cache.
        public var entriesApplied = 0
        /// Caches dropped because Redis lost its data (its generation changed).
        public var generationResets = 0
    }

    let transactionKeyPrefix: [UInt8]
    /// `P:x:{e:` for each entity type `e`: a stream key is this, the key's hex and `}`.
    let streamKeyPrefixes: [[UInt8]]

    deinit { state.withLock { $0.cache.removeAll() } }  // unlinks the cache's recency list

    public init(plan: FeaturePlan, configuration: RedisConfiguration, allowedLateness: Int64 = 86_400_000) {
        transactionKeyPrefix = Array("\(configuration.prefix):t:{".utf8)
        streamKeyPrefixes = plan.entities.indices.map { Array("\(configuration.prefix):x:{\($0):".utf8) }
        self.plan = plan
        self.configuration = configuration
        self.allowedLateness = allowedLateness
        state = Mutex(State(
            connection: configuration.url.cluster ? RedisClusterClient(configuration: configuration) : RedisConnection(configuration: configuration),
            breaker: CircuitBreaker(threshold: configuration.breakerThreshold, cooldown: configuration.breakerCooldown,
                                    maxCooldown: configuration.breakerMaxCooldown),
            cache: EntityCache(budget: configuration.cacheBytes), scratch: plan.entities.map { WindowAggregates(plan: $0) }))
    }

    /// Round trips made so far (for benchmarks and tests).
    public var roundTrips: Int { state.withLock { $0.roundTrips } }

    public var statistics: SyncStatistics { state.withLock { $0.stats } }

    /// Entities cached, their approximate bytes, and evictions so far.
    public var cacheUsage: (entities: Int, bytes: Int, evictions: Int) {
        state.withLock { ($0.cache.count, $0.cache.bytes, $0.cache.evictions) }
    }

    /// Redis Cluster redirections followed so far (MOVED, ASK); zeros on a single Redis.
    public var clusterRedirects: (moved: Int, ask: Int) {
        state.withLock { ($0.connection as? RedisClusterClient)?.redirects ?? (0, 0) }
    }

    /// True while the breaker is open: the scorer degrades without trying Redis.
    public var isCircuitOpen: Bool { state.withLock { $0.breaker.isOpen } }

    // MARK: Keys and encoding

    /// Writes `s`'s stream key as the next argument.
    func streamKey(_ s: EntitySlot, into p: inout RedisPipeline) { p.argument(streamKeyPrefixes[s.entity], hex: s.key, UInt8(ascii: "}")) }

    /// `PEXPIRE` of `s`'s stream.
    func expire(_ s: EntitySlot, after ttl: Int64, into p: inout RedisPipeline) {
        p.begin(3)
        p.argument(Self.PEXPIRE)
        streamKey(s, into: &p)
        p.argument(Self.empty, decimal: UInt64(ttl))
    }

    /// Writes transaction `id`'s record key as the next argument.
    func transactionKey(_ id: UInt64, into p: inout RedisPipeline) { p.argument(transactionKeyPrefix, hex: id, UInt8(ascii: "}")) }

    // Command words, made once (every command of every batch names one).
    static let SET = Array("SET".utf8), GET = Array("GET".utf8), PX = Array("PX".utf8), NX = Array("NX".utf8)
    static let XADD = Array("XADD".utf8), XRANGE = Array("XRANGE".utf8), XTRIM = Array("XTRIM".utf8)
    static let PEXPIRE = Array("PEXPIRE".utf8), NOMKSTREAM = Array("NOMKSTREAM".utf8), MINID = Array("MINID".utf8)
    static let COUNT = Array("COUNT".utf8), first = Array("-".utf8), last = Array("+".utf8), createID = Array("0-1".utf8)
    static let streamID = Array("0-".utf8), after = Array("(0-".utf8), empty: [UInt8] = []
    var generationKey: [UInt8] { Array("\(configuration.prefix):{gen}".utf8) }

    static func append(_ v: UInt64, to out: inout [UInt8]) {
        var x = v.littleEndian
        withUnsafeBytes(of: &x) { out.append(contentsOf: $0) }
    }
    static func read(_ b: ArraySlice<UInt8>, _ at: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[b.startIndex + at + k]) << (8 * UInt64(k)) }
        return v
    }

    /// Bytes of one packed event of entity type `e`: id, time, amount, latitude, longitude, filter
    /// bits, then the hashed tracked fields.
    func eventSize(_ e: Int) -> Int { 41 + 8 * plan.entities[e].tracked.count }

    func appendEvent(_ batch: EventBatch, _ i: Int, _ e: Int, to m: inout [UInt8]) {
        Self.append(batch.ids[i], to: &m)
        Self.append(UInt64(bitPattern: batch.times[i]), to: &m)
        Self.append(batch.amounts[i].bitPattern, to: &m)
        Self.append(batch.lats[i].bitPattern, to: &m)
        Self.append(batch.lons[i].bitPattern, to: &m)
        m.append(batch.filterBits[i * batch.entityCount + e])
        let base = i * batch.trackedTotal + batch.trackedOffsets[e]
        for k in 0..<plan.entities[e].tracked.count { Self.append(batch.tracked[base + k], to: &m) }
    }

    /// `0-n` → n.
    static func sequence(_ id: [UInt8]) -> UInt64? {
        guard id.count > 2, id[0] == UInt8(ascii: "0"), id[1] == UInt8(ascii: "-") else { return nil }
        return UInt64(String(decoding: id[2...], as: UTF8.self))
    }

    /// Applies one stream entry (events or labels) to a cached entity. Returns the newest event time it carries.
    func apply(field: [UInt8], value: [UInt8], to c: CachedEntity, entity e: Int) throws(StoreError) -> Int64 {
        let ep = plan.entities[e]
        var newest = Int64.min
        if field == [UInt8(ascii: "e")] {
            let size = eventSize(e)
            guard value.count % size == 0 else { throw StoreError(.protocolError, "malformed event entry (\(value.count) bytes)") }
            var tracked = [UInt64](repeating: 0, count: ep.tracked.count)
            var at = 0
            while at < value.count {
                let v = value[at..<(at + size)]
                let time = Int64(bitPattern: Self.read(v, 8))
                for k in tracked.indices { tracked[k] = Self.read(v, 41 + 8 * k) }
                tracked.withUnsafeBufferPointer { t in
                    _ = c.state.insert(
                        plan: ep, time: time, id: Self.read(v, 0), amount: Double(bitPattern: Self.read(v, 16)),
                        lat: Double(bitPattern: Self.read(v, 24)), lon: Double(bitPattern: Self.read(v, 32)), filterBits: v[v.startIndex + 40],
                        tracked: t)
                }
                newest = max(newest, time)
                at += size
            }
        } else if field == [UInt8(ascii: "l")] {
            guard value.count % 16 == 0 else { throw StoreError(.protocolError, "malformed label entry (\(value.count) bytes)") }
            var at = 0
            while at < value.count {
                let v = value[at..<(at + 16)]
                let id = Self.read(v, 0), time = Int64(bitPattern: Self.read(v, 8))
                if let i = c.state.events.index(time: time, id: id) { c.state.setLabel(2, at: i, plan: ep) }
                newest = max(newest, time)
                at += 16
            }
        } else {
            throw StoreError(.protocolError, "unknown stream field '\(String(decoding: field, as: UTF8.self))'")
        }
        return newest
    }

    /// Applies an `XRANGE` reply's entries after `c.last`.
    func apply(range reply: RedisReply, to c: CachedEntity, entity e: Int) throws(StoreError) -> Int {
        guard case .array(let entries) = reply else {
            throw StoreError(.protocolError, "unexpected XRANGE reply: \(reply.errorMessage ?? "\(reply)")")
        }
        for entry in entries {
            guard case .array(let pair) = entry, pair.count == 2, case .string(let id) = pair[0], let n = Self.sequence(id),
                  case .array(let fields) = pair[1], fields.count == 2, case .string(let f) = fields[0], case .string(let v) = fields[1]
            else { throw StoreError(.protocolError, "malformed stream entry") }
            guard n > c.last else { continue }
            let newest = try apply(field: f, value: v, to: c, entity: e)
            c.entries.append((n, newest))
            c.last = n
        }
        return entries.count
    }

    // MARK: Sync

    /// The entries a batch appends: one per entity it touches, in order of first appearance.
    struct Appends {
        var slots: [EntitySlot] = []
        var entries: [[UInt8]] = []
        /// The newest event time each entry carries.
        var newest: [Int64] = []
        var index: [EntitySlot: Int] = [:]

        init(capacity: Int = 0) { index.reserveCapacity(capacity) }

        /// Adds to `slot`'s entry; returns the entry's index.
        @discardableResult
        mutating func add(_ slot: EntitySlot, time: Int64, _ write: (inout [UInt8]) -> Void) -> Int {
            let k: Int
            if let found = index[slot] {
                k = found
            } else {
                k = slots.count
                index[slot] = k
                slots.append(slot)
                entries.append([])
                newest.append(.min)
            }
            write(&entries[k])
            newest[k] = max(newest[k], time)
            return k
        }
    }

    /// Entries read per `XRANGE`: a long log (a cold busy merchant) comes in bounded pieces, one
    /// round trip each, so no single reply runs into the read timeout.
    static let readChunkEntries = 128
    static let readChunk = Array(String(readChunkEntries).utf8)

    /// Appends one entry per slot to its entity's log, first catching up with whatever other
    /// instances appended, in as many round trips as contention needs (one when there is none).
    /// `leading` commands go out in the first round trip; their replies are returned.
    ///
    /// On return every slot is cached, holding every entry before the one appended, which is at
    /// `last`: the caller applies its own entry to the cache itself. Returns the leading
    /// commands' replies and each slot's cached entity (in `appends.slots` order).
    func sync(
        _ s: inout State, _ appends: Appends, field: [UInt8], leading: RedisPipeline
    ) throws(StoreError) -> (leading: [RedisReply], entities: [CachedEntity]) {
        let slots = appends.slots, entries = appends.entries, newest = appends.newest
        enum Step { case readWhole, readAfter, append, done }
        let now = ContinuousClock.now
        let ttl = plan.retention + allowedLateness

        let refreshEvery = Duration.milliseconds(max(ttl / 8, 1))
        // Each slot's entity, looked up once: the batch's steps, walk and settle use these.
        var cached = slots.map { s.cache.entities[$0] }
        var steps = cached.map { $0 == nil ? Step.readWhole : .append }
        var leadingReplies: [RedisReply] = []
        var round = 0, contended = 0
        while true {
            defer { round += 1 }
            var commands = RedisPipeline(capacity: round == 0 ? leading.bytes.count + slots.count * 160 : 4096)
            if round == 0 {
                if s.generation == nil {
                    let token = KeyedHasher.hex(UInt64.random(in: 1...UInt64.max)) + KeyedHasher.hex(UInt64.random(in: 1...UInt64.max))
                    commands.append([Self.SET, generationKey, Array(token.utf8), Self.NX])
                }
                commands.append([Self.GET, generationKey])
                commands.append(contentsOf: s.pendingTrims)
                commands.append(contentsOf: leading)
            }
            let head = commands.count
            var sent: [(slot: Int, at: Int)] = []
            for (k, slot) in slots.enumerated() where steps[k] != .done {
                switch steps[k] {
                case .done: continue
                case .readWhole:
                    sent.append((k, commands.count))
                    commands.begin(6)
                    commands.argument(Self.XRANGE)
                    streamKey(slot, into: &commands)
                    commands.argument(Self.first)
                    commands.argument(Self.last)
                    commands.argument(Self.COUNT)
                    commands.argument(Self.readChunk)
                    // Creates the stream if it has none; refused (harmlessly) if it has entries.
                    commands.begin(5)
                    commands.argument(Self.XADD)
                    streamKey(slot, into: &commands)
                    commands.argument(Self.createID)
                    commands.argument(field)
                    commands.argument(entries[k])
                    expire(slot, after: ttl, into: &commands)
                case .readAfter:
                    sent.append((k, commands.count))
                    commands.begin(6)
                    commands.argument(Self.XRANGE)
                    streamKey(slot, into: &commands)
                    commands.argument(Self.after, decimal: cached[k]!.last)
                    commands.argument(Self.last)
                    commands.argument(Self.COUNT)
                    commands.argument(Self.readChunk)
                case .append:
                    sent.append((k, commands.count))
                    let c = cached[k]!
                    // An entity read as empty may still have no stream; one known to have entries
                    // must still have them, else it expired or Redis lost it: never recreate it here.
                    commands.begin(c.last > 0 ? 6 : 5)
                    commands.argument(Self.XADD)
                    streamKey(slot, into: &commands)
                    if c.last > 0 { commands.argument(Self.NOMKSTREAM) }
                    commands.argument(Self.streamID, decimal: c.last + 1)
                    commands.argument(field)
                    commands.argument(entries[k])
                    if now - c.refreshed > refreshEvery {
                        expire(slot, after: ttl, into: &commands)
                        c.refreshed = now
                    }
                }
            }
            let replies = try roundTrip(&s, commands)
            if round == 0 {
                let got = replies[s.generation == nil ? 1 : 0]
                let g: [UInt8]? = if case .string(let g) = got { g } else { nil }
                if got.errorMessage != nil { throw StoreError(.protocolError, "GET generation: \(got.errorMessage!)") }
                s.pendingTrims = RedisPipeline()
                leadingReplies = Array(replies[(head - leading.count)..<head])
                if s.generation != nil, s.generation != g {
                    // Redis restarted empty or was flushed: what the caches hold is gone from
                    // Redis, so every instance starts again from what Redis has. Appends that went
                    // through in this round are in the log and are read back like anyone's.
                    s.cache.removeAll()
                    s.generation = nil
                    s.stats.generationResets += 1
                    return (leadingReplies, try sync(&s, appends, field: field, leading: RedisPipeline()).entities)
                }
                s.generation = g
            }
            for (k, at) in sent {
                let slot = slots[k]
                switch steps[k] {
                case .readWhole:
                    s.stats.coldReads += 1
                    let c = CachedEntity(plan: plan.entities[slot.entity], now: now)
                    let read = try apply(range: replies[at], to: c, entity: slot.entity)
                    if case .string(let id) = replies[at + 1], Self.sequence(id) == 1 {
                        // The stream was empty and this entry created it.
                        c.entries.append((1, newest[k]))
                        c.last = 1
                        steps[k] = .done
                    } else {
                        steps[k] = c.last == 0 || read == Self.readChunkEntries ? .readAfter : .append
                    }
                    s.cache.insert(slot, c)
                    cached[k] = c
                case .readAfter:
                    let read = try apply(range: replies[at], to: cached[k]!, entity: slot.entity)
                    s.stats.entriesApplied += read
                    // A full chunk: there may be more (a long log is read in bounded pieces).
                    steps[k] = read == Self.readChunkEntries ? .readAfter : .append
                case .append:
                    switch replies[at] {
                    case .string:
                        let c = cached[k]!
                        c.last += 1
                        c.entries.append((c.last, newest[k]))
                        steps[k] = .done
                    case .null:
                        // NOMKSTREAM: the stream is gone (expired or lost). Start over from Redis.
                        s.cache.remove(slot)
                        cached[k] = nil
                        steps[k] = .readWhole
                    case .error(let m) where m.contains("equal or smaller"):
                        s.stats.conflicts += 1
                        contended += 1
                        steps[k] = .readAfter
                    default:
                        throw StoreError(.protocolError, "XADD: \(replies[at].errorMessage ?? "\(replies[at])")")
                    }
                case .done: break
                }
            }
            if !steps.contains(where: { if case .done = $0 { false } else { true } }) { return (leadingReplies, cached.map { $0! }) }
            if contended > 8 * slots.count || round >= 4096 {
                throw StoreError(.timeout, "gave up appending after \(round + 1) round trips (contention with other instances)")
            }
        }
    }

    /// After a batch: trims entries wholly older than the canonical cutoff (sent with the next
    /// batch), counts the cache's bytes, and evicts over budget.
    func settle(_ s: inout State, entities: [CachedEntity]) {
        for c in entities {
            let slot = c.slot
            guard let newest = c.state.events.newestTime else {
                s.cache.touch(c)
                continue
            }
            let cutoff = newest - plan.entities[slot.entity].retention - allowedLateness
            var first = 0
            while first < c.entries.count - 1, c.entries[first].newest < cutoff { first += 1 }
            if first >= 16 {
                s.pendingTrims.begin(4)
                s.pendingTrims.argument(Self.XTRIM)
                streamKey(slot, into: &s.pendingTrims)
                s.pendingTrims.argument(Self.MINID)
                s.pendingTrims.argument(Self.streamID, decimal: c.entries[first].seq)
                c.entries.removeFirst(first)
            }
            s.cache.touch(c)
        }
        s.cache.evictIfNeeded()
    }

    // MARK: VelocityStore

    public func process(_ batch: EventBatch, into matrix: inout FeatureMatrix) throws(StoreError) {
        guard batch.count > 0 else { return }
        // The batch's entities in order of first appearance, each with its entry: its events in batch order.
        var appends = Appends(capacity: batch.keys.count)
        // Each (transaction, entity)'s entry, at the walk's `position`.
        var entryOf = [Int](repeating: -1, count: batch.keys.count)
        for i in 0..<batch.count {
            for e in 0..<batch.entityCount {
                let key = batch.keys[i * batch.entityCount + e]
                guard key != 0 else { continue }
                entryOf[i * batch.entityCount + e] = appends.add(EntitySlot(entity: e, key: key), time: batch.times[i]) {
                    appendEvent(batch, i, e, to: &$0)
                }
            }
        }
        let ttl = Array(String(plan.retention + allowedLateness).utf8)
        var records = RedisPipeline(capacity: batch.count * (80 + 8 * batch.entityCount))
        for i in 0..<batch.count {
            records.begin(6)
            records.argument(Self.SET)
            transactionKey(batch.ids[i], into: &records)
            records.argument(count: 8 * (1 + batch.entityCount)) { record in
                Self.append(UInt64(bitPattern: batch.times[i]), to: &record)
                for e in 0..<batch.entityCount { Self.append(batch.keys[i * batch.entityCount + e], to: &record) }
            }
            records.argument(Self.PX)
            records.argument(ttl)
            records.argument(Self.NX)
        }
        let plan = self.plan
        let lateness = allowedLateness
        try state.withLock { s throws(StoreError) in
            let (set, entities) = try sync(&s, appends, field: [UInt8(ascii: "e")], leading: records)
            for r in set { if let m = r.errorMessage { throw StoreError(.protocolError, "SET: \(m)") } }
            // Every entity now holds exactly the entries before this batch's own: evaluate in
            // batch order, applying the batch's events as the walk goes. SET NX answered nil: the
            // transaction was recorded before (a redelivery).
            batch.walk(plan: plan, lateness: lateness, into: &matrix, duplicate: { set[$0] == .null }, scratch: &s.scratch) { _, _, position, body in
                body(&entities[entryOf[position]].state)
            }
            settle(&s, entities: entities)
        }
    }

    @discardableResult
    public func apply(labels: [(id: UInt64, fraud: Bool)]) throws(StoreError) -> Int {
        let fraud = labels.filter(\.fraud)
        guard !fraud.isEmpty else { return 0 }
        let records = try state.withLock { s throws(StoreError) in
            var gets = RedisPipeline()
            for l in fraud {
                gets.begin(2)
                gets.argument(Self.GET)
                transactionKey(l.id, into: &gets)
            }
            return try roundTrip(&s, gets)
        }
        var appends = Appends()
        var marks: [(slot: EntitySlot, id: UInt64, time: Int64)] = []
        var matched = 0
        for (l, r) in zip(fraud, records) {
            guard case .string(let record) = r, record.count == 8 * (1 + plan.entities.count) else { continue }
            matched += 1
            let time = Int64(bitPattern: Self.read(record[...], 0))
            for e in 0..<plan.entities.count {
                let key = Self.read(record[...], 8 * (1 + e))
                guard key != 0 else { continue }
                let slot = EntitySlot(entity: e, key: key)
                appends.add(slot, time: time) { entry in
                    Self.append(l.id, to: &entry)
                    Self.append(UInt64(bitPattern: time), to: &entry)
                }
                marks.append((slot, l.id, time))
            }
        }
        guard !appends.slots.isEmpty else { return matched }
        let plan = self.plan
        try state.withLock { s throws(StoreError) in
            let entities = try sync(&s, appends, field: [UInt8(ascii: "l")], leading: RedisPipeline()).entities
            for m in marks {
                let c = entities[appends.index[m.slot]!]
                guard let i = c.state.events.index(time: m.time, id: m.id) else { continue }
                c.state.setLabel(2, at: i, plan: plan.entities[m.slot.entity])
            }
            settle(&s, entities: entities)
        }
        return matched
    }

    /// The distinct events recorded in an entity's stream in log order (a redelivery counts where
    /// it first appears), and those labelled fraud (tests and diagnostics).
    public func streamContents(_ key: String) throws(StoreError) -> (events: [UInt64], fraud: Set<UInt64>) {
        guard let open = key.firstIndex(of: "{"), let colon = key[open...].firstIndex(of: ":"), let e = Int(key[key.index(after: open)..<colon]),
              plan.entities.indices.contains(e) else { throw StoreError(.protocolError, "not an entity stream key: \(key)") }
        let reply = try command(["XRANGE", key, "-", "+"])
        guard case .array(let items) = reply else { throw StoreError(.protocolError, "unexpected XRANGE reply") }
        var events: [UInt64] = [], seen = Set<UInt64>(), fraud = Set<UInt64>()
        for case .array(let pair) in items {
            guard pair.count == 2, case .array(let fields) = pair[1], fields.count == 2, case .string(let f) = fields[0],
                  case .string(let v) = fields[1] else { continue }
            let size = f == [UInt8(ascii: "e")] ? eventSize(e) : 16
            var at = 0
            while at + size <= v.count {
                let id = Self.read(v[at...], 0)
                if size == 16 { fraud.insert(id) } else if seen.insert(id).inserted { events.append(id) }
                at += size
            }
        }
        return (events, fraud)
    }

    /// One pipelined round trip through the breaker.
    func roundTrip(_ s: inout State, _ commands: RedisPipeline) throws(StoreError) -> [RedisReply] {
        guard s.breaker.allow(now: .now) else {
            throw StoreError(.unavailable, "circuit open: Redis failed \(s.breaker.failures) times in a row")
        }
        do {
            let replies = try s.connection.pipeline(commands)
            s.roundTrips += 1
            s.breaker.succeeded()
            return replies
        } catch {
            s.breaker.failed(now: .now)
            throw error
        }
    }

    /// Sends arbitrary commands (tests, benchmarks, administration).
    public func command(_ args: [String]) throws(StoreError) -> RedisReply {
        try state.withLock { s throws(StoreError) in try roundTrip(&s, RedisPipeline([args.bytes]))[0] }
    }
}
