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
/// - `P:x:{E:H}:n` — the entity's log in epoch `n`, a string of frames appended with `APPEND`:
///   one batch's events of the entity, or fraud labels. When the frames wholly older than the
///   retention plus the allowed lateness have grown large, a compaction copies the rest into
///   epoch `n + 1` and seals epoch `n`; a TTL of the retention expires idle entities.
/// - `P:p:{E:H}` — the entity's current epoch, once it has been compacted (absent: 0).
/// - `P:t:{I}` — the transaction record (time + entity keys), for idempotence and labels.
/// - `P:{gen}` — a random generation (the one key without a TTL), so a Redis that lost its data is noticed and caches dropped.
///
/// Sync protocol, one pipelined round trip per batch in the steady state: for a cached entity
/// whose log this process knows up to byte `n`, `APPEND` the batch's frame. Redis answers the
/// new length: a frame that starts at `n` proves nobody appended since this process last
/// looked, and the cached windows are exact. Otherwise the bytes in between are read
/// (`GETRANGE`) and applied. An entity not cached is read whole (bounded by its retention) in
/// the round trip that appends its frame. The features of a batch's events thus come from
/// exactly the frames before the batch's own in each entity's log: the same order for every
/// instance. Redis only appends and reads ranges on the batch's path; all aggregation happens
/// client-side, incrementally (``EntityState``).
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
        /// Compactions decided after a batch, sent with the next one.
        var pendingCompactions: [(slot: EntitySlot, epoch: UInt64, dead: Int)] = []
        var stats = SyncStatistics()
        /// The walk's working memory, kept across batches.
        var scratch: [WindowAggregates]
    }
    let state: Mutex<State>

    /// What the sync did so far (for benchmarks, tests and metrics).
    public struct SyncStatistics: Sendable {
        /// Entities read whole (not cached, evicted, or their log disappeared).
        public var coldReads = 0
        /// Appends that found another instance's frames before their own.
        public var conflicts = 0
        /// Frames of other instances (or of earlier failed batches) applied to the cache.
        public var framesApplied = 0
        /// Logs this instance compacted.
        public var compactions = 0
        /// Frames that landed after another instance's compaction had sealed the log, and were
        /// appended again to the next epoch.
        public var voidAppends = 0
        /// Caches dropped because Redis lost its data (its generation changed).
        public var generationResets = 0
    }

    let transactionKeyPrefix: [UInt8]
    /// `P:x:{e:` and `P:p:{e:` for each entity type `e`: a log key is the first, the key's hex,
    /// `}:` and the epoch; a pointer key the second, the hex and `}`.
    let logKeyPrefixes: [[UInt8]], pointerKeyPrefixes: [[UInt8]]

    deinit { state.withLock { $0.cache.removeAll() } }  // unlinks the cache's recency list

    public init(plan: FeaturePlan, configuration: RedisConfiguration, allowedLateness: Int64 = 86_400_000) {
        transactionKeyPrefix = Array("\(configuration.prefix):t:{".utf8)
        logKeyPrefixes = plan.entities.indices.map { Array("\(configuration.prefix):x:{\($0):".utf8) }
        pointerKeyPrefixes = plan.entities.indices.map { Array("\(configuration.prefix):p:{\($0):".utf8) }
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

    /// Writes `s`'s log key of `epoch` as the next argument: `P:x:{E:H}:epoch`.
    func logKey(_ s: EntitySlot, _ epoch: UInt64, into p: inout RedisPipeline) {
        let prefix = logKeyPrefixes[s.entity]
        p.argument(count: prefix.count + 18 + ASCIINumbers.digits(epoch)) {
            $0.append(contentsOf: prefix)
            ASCIINumbers.appendHex(s.key, to: &$0)
            $0.append(UInt8(ascii: "}"))
            $0.append(UInt8(ascii: ":"))
            ASCIINumbers.appendDecimal(epoch, to: &$0)
        }
    }

    /// Writes `s`'s epoch pointer key as the next argument: `P:p:{E:H}` (absent: epoch 0).
    func pointerKey(_ s: EntitySlot, into p: inout RedisPipeline) { p.argument(pointerKeyPrefixes[s.entity], hex: s.key, UInt8(ascii: "}")) }

    /// Writes transaction `id`'s record key as the next argument.
    func transactionKey(_ id: UInt64, into p: inout RedisPipeline) { p.argument(transactionKeyPrefix, hex: id, UInt8(ascii: "}")) }

    // Command words for the commands built whole (the batch path writes its words as constants).
    static let SET = Array("SET".utf8), GET = Array("GET".utf8), PX = Array("PX".utf8), NX = Array("NX".utf8), zero = Array("0".utf8)
    var generationKey: [UInt8] { Array("\(configuration.prefix):{gen}".utf8) }

    /// The compaction, the one script: sent after a batch's appends when a log's dead prefix
    /// has grown past its threshold, about once per retention per entity. It checks
    /// that epoch `k` is still the current one, copies the log from the first live frame into
    /// epoch `k + 1` behind a header, seals epoch `k` (a seal frame naming `k + 1`, so that an
    /// append that lands after it is known to be void), shortens the sealed log's TTL and moves
    /// the pointer: all at once, as a script runs. KEYS: the logs of `k` and `k + 1`, the
    /// pointer; ARGV: `k`, the dead prefix's length, the header, the seal, the TTL, the sealed
    /// log's TTL (ms).
    static let compactScript = Array("""
        local current = redis.call('GET', KEYS[3]) or '0'
        if current ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        local live = redis.call('GETRANGE', KEYS[1], ARGV[2], -1)
        redis.call('SET', KEYS[2], ARGV[3] .. live, 'PX', ARGV[5])
        redis.call('APPEND', KEYS[1], ARGV[4])
        redis.call('PEXPIRE', KEYS[1], ARGV[6])
        redis.call('SET', KEYS[3], tostring(tonumber(ARGV[1]) + 1), 'PX', ARGV[5])
        return 1
        """.utf8)

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

    // MARK: Frames

    /// A log is a string of frames: a kind byte, the payload's length (4 bytes, little-endian),
    /// the payload. `e`: one batch's events of the entity; `l`: fraud labels (id, time: 16 bytes
    /// each); `h`: an epoch's header (its number, the dead prefix it left behind); `s`: the seal
    /// of an epoch (the next epoch, the dead prefix): nothing after it counts.
    enum Frame {
        static let events = UInt8(ascii: "e"), labels = UInt8(ascii: "l"), header = UInt8(ascii: "h"), seal = UInt8(ascii: "s")
        static let overhead = 5
        /// The header (or seal) frame's length: its 16-byte payload after the kind and length.
        static let markerSize = overhead + 16

        /// The payload length of the frame at `at` (its header must be there).
        static func payloadSize(_ b: ArraySlice<UInt8>, _ at: Int) -> Int {
            Int(b[at + 1]) | Int(b[at + 2]) << 8 | Int(b[at + 3]) << 16 | Int(b[at + 4]) << 24
        }

        static func write(_ kind: UInt8, _ payload: [UInt8], to out: inout [UInt8]) {
            out.append(kind)
            for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: payload.count >> shift)) }
            out.append(contentsOf: payload)
        }

        static func marker(_ kind: UInt8, epoch: UInt64, dead: Int) -> [UInt8] {
            var f: [UInt8] = [kind, 16, 0, 0, 0]
            RedisVelocityStore.append(epoch, to: &f)
            RedisVelocityStore.append(UInt64(dead), to: &f)
            return f
        }
    }

    /// Writes one frame (`kind`, `payload`) as the next argument.
    static func frameArgument(_ kind: UInt8, _ payload: [UInt8], into p: inout RedisPipeline) {
        p.argument(count: Frame.overhead + payload.count) { Frame.write(kind, payload, to: &$0) }
    }

    /// A seal met while reading an epoch: the epoch it names, the dead prefix it left behind.
    struct Seal {
        let next: UInt64
        let dead: Int
    }

    /// Applies the whole frames of `bytes` (the log of `c`'s epoch from `c.length` on) to `c`,
    /// stopping at a seal. Returns the seal, if one was met; a partial frame at the end is left
    /// for the next read (``CachedEntity/length`` ends at the last whole frame applied).
    func consume(_ bytes: ArraySlice<UInt8>, into c: CachedEntity, entity e: Int) throws(StoreError) -> Seal? {
        var at = bytes.startIndex
        while bytes.endIndex - at >= Frame.overhead {
            let kind = bytes[at], size = Frame.payloadSize(bytes, at)
            guard bytes.endIndex - at - Frame.overhead >= size else { break }
            let payload = bytes[(at + Frame.overhead)..<(at + Frame.overhead + size)]
            let offset = c.length
            switch kind {
            case Frame.seal, Frame.header:
                guard size == 16 else { throw StoreError(.protocolError, "malformed log marker (\(size) bytes)") }
                let epoch = Self.read(payload, 0), dead = Int(Self.read(payload, 8))
                if kind == Frame.seal { return Seal(next: epoch, dead: dead) }
                c.length += Frame.overhead + size
                c.base = c.length
            case Frame.events, Frame.labels:
                let newest = try apply(kind: kind, payload, to: c, entity: e)
                c.length += Frame.overhead + size
                c.frames.append((c.length, newest))
            default:
                throw StoreError(.protocolError, "unknown log frame '\(kind)' at byte \(offset)")
            }
            at += Frame.overhead + size
        }
        return nil
    }

    /// The bytes a read must ask for to make progress: a chunk, or the whole of a frame larger
    /// than one that `partial` (the unread rest of the last reply) begins.
    func readLength(after partial: ArraySlice<UInt8>) -> Int {
        let chunk = configuration.readChunkBytes
        guard partial.count >= Frame.overhead else { return chunk }
        return max(chunk, Frame.overhead + Frame.payloadSize(partial, partial.startIndex))
    }

    /// Moves `c` from its epoch to the next one, which a compaction made of the log from `dead`
    /// on (up to the seal, where `c` stands) behind a header.
    static func moveToNextEpoch(_ c: CachedEntity, dead: Int) {
        let shift = Frame.markerSize - dead
        c.epoch += 1
        c.length += shift
        c.base = Frame.markerSize
        c.frames = c.frames.compactMap { $0.end > dead ? ($0.end + shift, $0.newest) : nil }
        c.deadFrames = 0
    }

    /// Applies one frame's payload (events or labels) to a cached entity. Returns the newest event time it carries.
    func apply(kind: UInt8, _ value: ArraySlice<UInt8>, to c: CachedEntity, entity e: Int) throws(StoreError) -> Int64 {
        let ep = plan.entities[e]
        var newest = Int64.min
        if kind == Frame.events {
            let size = eventSize(e)
            guard value.count % size == 0 else { throw StoreError(.protocolError, "malformed event frame (\(value.count) bytes)") }
            var tracked = [UInt64](repeating: 0, count: ep.tracked.count)
            var at = 0
            while at < value.count {
                let v = value[(value.startIndex + at)..<(value.startIndex + at + size)]
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
        } else {
            guard value.count % 16 == 0 else { throw StoreError(.protocolError, "malformed label frame (\(value.count) bytes)") }
            var at = 0
            while at < value.count {
                let v = value[(value.startIndex + at)..<(value.startIndex + at + 16)]
                let id = Self.read(v, 0), time = Int64(bitPattern: Self.read(v, 8))
                if let i = c.state.events.index(time: time, id: id) { c.state.setLabel(2, at: i, plan: ep) }
                newest = max(newest, time)
                at += 16
            }
        }
        return newest
    }

    // MARK: Sync

    /// The frames a batch appends: one per entity it touches, in order of first appearance.
    struct Appends {
        var slots: [EntitySlot] = []
        var payloads: [[UInt8]] = []
        /// The newest event time each frame carries.
        var newest: [Int64] = []
        var index: [EntitySlot: Int] = [:]

        init(capacity: Int = 0) { index.reserveCapacity(capacity) }

        /// Adds to `slot`'s frame `size` bytes, which `write` appends; returns the frame's index.
        /// A new frame starts with room for them: most frames hold one event, which grown from
        /// empty cost four reallocations (7.75% of the store's instructions in a profile).
        @discardableResult
        mutating func add(_ slot: EntitySlot, time: Int64, size: Int, _ write: (inout [UInt8]) -> Void) -> Int {
            let k: Int
            if let found = index[slot] {
                k = found
            } else {
                k = slots.count
                index[slot] = k
                slots.append(slot)
                var payload: [UInt8] = []
                payload.reserveCapacity(size)
                payloads.append(payload)
                newest.append(.min)
            }
            write(&payloads[k])
            newest[k] = max(newest[k], time)
            return k
        }
    }

    /// Where a slot stands in ``sync(_:_:kind:leading:)``.
    enum Step {
        /// Not cached: read the log from its start while appending (`nil`: the epoch is not
        /// known, so read the pointer too and try epoch 0, every entity's first).
        case cold(UInt64?)
        case append
        /// Read the log from `length` up to `to`, where this process's frame starts.
        case read(to: Int)
        case done
    }

    /// Appends one frame per slot to its entity's log, first catching up with whatever other
    /// instances appended, in as many round trips as contention needs (one when there is none).
    /// `leading` commands go out first in the first round trip; their replies are returned.
    ///
    /// `APPEND` answers the log's new length: when the frame starts where this process's
    /// knowledge of the log ends, nobody appended in between and the cache is exact; otherwise
    /// the bytes in between (other instances' frames) are read and applied. Either way the frame
    /// keeps the place Redis gave it, so every instance applies each log in the same order. A
    /// seal among those bytes means the epoch was compacted before the frame landed: the frame
    /// is void (no reader looks past a seal), and goes again into the next epoch.
    ///
    /// On return every slot is cached, holding every frame before the one appended, which ends
    /// at `length`: the caller applies its own frame to the cache itself. Returns the leading
    /// commands' replies and each slot's cached entity (in `appends.slots` order).
    func sync(
        _ s: inout State, _ appends: Appends, kind: UInt8, leading: RedisPipeline
    ) throws(StoreError) -> (leading: [RedisReply], entities: [CachedEntity]) {
        let slots = appends.slots, payloads = appends.payloads, newest = appends.newest
        let now = ContinuousClock.now
        let ttl = UInt64(plan.retention + allowedLateness)
        let refreshEvery = Duration.milliseconds(max(Int64(ttl) / 8, 1))
        // Each slot's entity, looked up once: the batch's steps, walk and settle use these.
        var cached = slots.map { s.cache.entities[$0] }
        var steps = cached.map { $0 == nil ? Step.cold(nil) : .append }
        // What a read left of a frame cut at the end of its reply.
        var partial = [ArraySlice<UInt8>](repeating: [], count: slots.count)
        var leadingReplies: [RedisReply] = []
        var compacting: [(slot: EntitySlot, epoch: UInt64, dead: Int)] = []
        // The compactions of this sync that went through.
        var compactedHere: [EntitySlot: (epoch: UInt64, dead: Int)] = [:]
        var reshorten: [(slot: EntitySlot, epoch: UInt64)] = []
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
                commands.append(contentsOf: leading)
            }
            for r in reshorten {
                commands.begin(3)
                commands.argument("PEXPIRE")
                logKey(r.slot, r.epoch, into: &commands)
                commands.argument(decimal: Self.sealedTTL)
            }
            reshorten = []
            let head = commands.count
            var sent: [(slot: Int, at: Int)] = []
            for (k, slot) in slots.enumerated() {
                switch steps[k] {
                case .done: continue
                case .cold(let epoch):
                    sent.append((k, commands.count))
                    if epoch == nil {
                        commands.begin(2)
                        commands.argument("GET")
                        pointerKey(slot, into: &commands)
                    }
                    let e = epoch ?? 0
                    commands.begin(4)
                    commands.argument("GETRANGE")
                    logKey(slot, e, into: &commands)
                    commands.argument("0")
                    commands.argument(decimal: UInt64(configuration.readChunkBytes - 1))
                    commands.begin(3)
                    commands.argument("APPEND")
                    logKey(slot, e, into: &commands)
                    Self.frameArgument(kind, payloads[k], into: &commands)
                    // A log this append created gets its TTL; one that had it keeps it.
                    commands.begin(4)
                    commands.argument("PEXPIRE")
                    logKey(slot, e, into: &commands)
                    commands.argument(decimal: ttl)
                    commands.argument("NX")
                case .read(let to):
                    sent.append((k, commands.count))
                    let c = cached[k]!
                    let end = min(to, c.length + readLength(after: partial[k]))
                    commands.begin(4)
                    commands.argument("GETRANGE")
                    logKey(slot, c.epoch, into: &commands)
                    commands.argument(decimal: UInt64(c.length))
                    commands.argument(decimal: UInt64(end - 1))
                case .append:
                    sent.append((k, commands.count))
                    let c = cached[k]!
                    if now - c.used > configuration.staleAfter {
                        commands.begin(2)
                        commands.argument("GET")
                        pointerKey(slot, into: &commands)
                    }
                    commands.begin(3)
                    commands.argument("APPEND")
                    logKey(slot, c.epoch, into: &commands)
                    Self.frameArgument(kind, payloads[k], into: &commands)
                    if now - c.used > configuration.staleAfter {
                        // Should the log be gone, this append made a new one: it gets a TTL.
                        commands.begin(4)
                        commands.argument("PEXPIRE")
                        logKey(slot, c.epoch, into: &commands)
                        commands.argument(decimal: ttl)
                        commands.argument("NX")
                    } else if now - c.refreshed > refreshEvery {
                        commands.begin(3)
                        commands.argument("PEXPIRE")
                        logKey(slot, c.epoch, into: &commands)
                        commands.argument(decimal: ttl)
                        if c.epoch > 0 {
                            commands.begin(3)
                            commands.argument("PEXPIRE")
                            pointerKey(slot, into: &commands)
                            commands.argument(decimal: ttl)
                        }
                        c.refreshed = now
                    }
                }
            }
            // Compactions go after the appends: a frame appended in this round lands before the
            // seal, and is carried into the next epoch.
            let compactionsAt = commands.count
            if round == 0 {
                compacting = s.pendingCompactions
                s.pendingCompactions = []
                for p in compacting { compaction(p.slot, epoch: p.epoch, dead: p.dead, ttl: ttl, into: &commands) }
            }
            let replies = try roundTrip(&s, commands)
            if round == 0 {
                let got = replies[s.generation == nil ? 1 : 0]
                let g: [UInt8]? = if case .string(let g) = got { g } else { nil }
                if got.errorMessage != nil { throw StoreError(.protocolError, "GET generation: \(got.errorMessage!)") }
                leadingReplies = Array(replies[(head - leading.count)..<head])
                if s.generation != nil, s.generation != g {
                    // Redis restarted empty or was flushed: what the caches hold is gone from
                    // Redis, so every instance starts again from what Redis has. Appends that went
                    // through in this round are in the log and are read back like anyone's.
                    s.cache.removeAll()
                    s.generation = nil
                    s.stats.generationResets += 1
                    return (leadingReplies, try sync(&s, appends, kind: kind, leading: RedisPipeline()).entities)
                }
                s.generation = g
            }
            for (k, at) in sent {
                let slot = slots[k]
                switch steps[k] {
                case .cold(let epoch):
                    var at = at
                    var e = epoch ?? 0
                    if epoch == nil {
                        let pointer = try Self.epoch(replies[at])
                        at += 1
                        if pointer != 0 {
                            // A compacted entity: the frame went to a sealed (or expired) epoch 0
                            // and is void; read the current epoch and append there.
                            steps[k] = .cold(pointer)
                            continue
                        }
                        e = 0
                    }
                    s.stats.coldReads += 1
                    let c = CachedEntity(plan: plan.entities[slot.entity], now: now)
                    c.epoch = e
                    guard case .string(let bytes) = replies[at] else {
                        throw StoreError(.protocolError, "GETRANGE: \(replies[at].errorMessage ?? "\(replies[at])")")
                    }
                    let frameStart = try Self.appended(replies[at + 1], payloads[k])
                    s.cache.insert(slot, c)
                    cached[k] = c
                    if let seal = try consume(bytes[...], into: c, entity: slot.entity) {
                        // Compacted since the pointer was read: the frame is void.
                        s.cache.remove(slot)
                        cached[k] = nil
                        steps[k] = .cold(seal.next)
                        continue
                    }
                    partial[k] = bytes[c.length...]
                    steps[k] = settleAppend(c, frameStart: frameStart, frameEnd: frameStart + Frame.overhead + payloads[k].count, newest: newest[k])
                    if case .cold = steps[k] {
                        s.cache.remove(slot)
                        cached[k] = nil
                    }
                case .read(let to):
                    let c = cached[k]!
                    guard case .string(let bytes) = replies[at] else {
                        throw StoreError(.protocolError, "GETRANGE: \(replies[at].errorMessage ?? "\(replies[at])")")
                    }
                    let from = c.length, frames = c.frames.count
                    let seal = try consume(bytes[...], into: c, entity: slot.entity)
                    s.stats.framesApplied += c.frames.count - frames
                    if let seal {
                        // The epoch was compacted before this process's frame landed: it is void.
                        // A TTL refreshed with it goes back to the sealed log's.
                        if c.refreshed == now { reshorten.append((slot, c.epoch)) }
                        Self.moveToNextEpoch(c, dead: seal.dead)
                        s.stats.voidAppends += 1
                        contended += 1
                        steps[k] = .append
                    } else if c.length == to {
                        c.length = to + Frame.overhead + payloads[k].count
                        c.frames.append((c.length, newest[k]))
                        steps[k] = .done
                    } else if bytes.isEmpty {
                        // Shorter than the append reported: the log was lost meanwhile.
                        s.cache.remove(slot)
                        cached[k] = nil
                        steps[k] = .cold(nil)
                    } else {
                        partial[k] = bytes[(c.length - from)...]
                    }
                case .append:
                    var at = at
                    let c = cached[k]!
                    if now - c.used > configuration.staleAfter {
                        let pointer = try Self.epoch(replies[at])
                        at += 1
                        guard pointer == c.epoch else {
                            // Compacted, and the sealed log this process knew may be gone.
                            s.cache.remove(slot)
                            cached[k] = nil
                            steps[k] = .cold(pointer)
                            continue
                        }
                    }
                    let frameStart = try Self.appended(replies[at], payloads[k])
                    steps[k] = settleAppend(c, frameStart: frameStart, frameEnd: frameStart + Frame.overhead + payloads[k].count, newest: newest[k])
                    switch steps[k] {
                    case .read:
                        s.stats.conflicts += 1
                        contended += 1
                    case .cold:
                        s.cache.remove(slot)
                        cached[k] = nil
                    default: break
                    }
                case .done: break
                }
            }
            for (p, reply) in zip(compacting, replies[compactionsAt...]) where round == 0 {
                guard case .integer(let done) = reply else { throw StoreError(.protocolError, "compaction: \(reply.errorMessage ?? "\(reply)")") }
                s.stats.compactions += Int(done)
                if done == 1 { compactedHere[p.slot] = (p.epoch, p.dead) }
            }
            if !steps.contains(where: { if case .done = $0 { false } else { true } }) {
                // A compaction this process ran moved its own knowledge to the next epoch: the
                // entities still on the compacted epoch follow (the others met its seal).
                for (slot, p) in compactedHere {
                    guard let c = s.cache.entities[slot], c.epoch == p.epoch else { continue }
                    Self.moveToNextEpoch(c, dead: p.dead)
                }
                for c in cached { c!.used = now }
                return (leadingReplies, cached.map { $0! })
            }
            if contended > 8 * slots.count || round >= 4096 {
                throw StoreError(.timeout, "gave up appending after \(round + 1) round trips (contention with other instances)")
            }
        }
    }

    /// After an append whose frame starts at `frameStart`: done when it starts where `c`'s
    /// knowledge ends; else read what other instances appended in between; or, when it starts
    /// before that, the log was lost (expired, or Redis lost it): read it again.
    private func settleAppend(_ c: CachedEntity, frameStart: Int, frameEnd: Int, newest: Int64) -> Step {
        if frameStart == c.length {
            c.length = frameEnd
            c.frames.append((frameEnd, newest))
            return .done
        }
        return frameStart > c.length ? .read(to: frameStart) : .cold(nil)
    }

    /// The `GET` of an epoch pointer: its number, 0 when absent.
    static func epoch(_ reply: RedisReply) throws(StoreError) -> UInt64 {
        switch reply {
        case .null: return 0
        case .string(let b):
            guard let n = UInt64(String(decoding: b, as: UTF8.self)) else { throw StoreError(.protocolError, "malformed epoch pointer") }
            return n
        default: throw StoreError(.protocolError, "GET epoch: \(reply.errorMessage ?? "\(reply)")")
        }
    }

    /// Where an `APPEND`ed frame starts, from the length Redis answered.
    static func appended(_ reply: RedisReply, _ payload: [UInt8]) throws(StoreError) -> Int {
        guard case .integer(let length) = reply else { throw StoreError(.protocolError, "APPEND: \(reply.errorMessage ?? "\(reply)")") }
        return Int(length) - Frame.overhead - payload.count
    }

    /// How long a compacted epoch's sealed log outlives its compaction (ms): far longer than any
    /// sync takes, so that an instance whose frame landed in the epoch, before or after the seal,
    /// still reads what it needs there; and longer than ``RedisConfiguration/staleAfter``, so
    /// that an instance that last used the entity before the compaction finds the seal when it
    /// appends next, or reads the epoch pointer with that append.
    static let sealedTTL: UInt64 = 3_600_000

    /// The compaction of `slot`'s log of `epoch`, whose first `dead` bytes hold only events past
    /// the retention (``compactScript``).
    func compaction(_ slot: EntitySlot, epoch: UInt64, dead: Int, ttl: UInt64, into p: inout RedisPipeline) {
        p.begin(12, keyAt: 3)
        p.argument("EVAL")
        p.argument(Self.compactScript)
        p.argument("3")
        logKey(slot, epoch, into: &p)
        logKey(slot, epoch + 1, into: &p)
        pointerKey(slot, into: &p)
        p.argument(decimal: epoch)
        p.argument(decimal: UInt64(dead))
        p.argument(Frame.marker(Frame.header, epoch: epoch + 1, dead: dead))
        p.argument(Frame.marker(Frame.seal, epoch: epoch + 1, dead: dead))
        p.argument(decimal: ttl)
        p.argument(decimal: Self.sealedTTL)
    }

    /// After a batch: queues the compaction of logs whose dead prefix (frames wholly older than
    /// the canonical cutoff) has grown past the threshold (sent with the next batch), counts the
    /// cache's bytes, and evicts over budget.
    func settle(_ s: inout State, entities: [CachedEntity]) {
        for c in entities {
            defer { s.cache.touch(c) }
            guard let newest = c.state.events.newestTime else { continue }
            let cutoff = newest - plan.entities[c.slot.entity].retention - allowedLateness
            var first = c.deadFrames
            while first < c.frames.count - 1, c.frames[first].newest < cutoff { first += 1 }
            c.deadFrames = first
            guard first > 0 else { continue }
            let dead = c.frames[first - 1].end, deadBytes = dead - c.base
            if deadBytes >= configuration.compactionBytes, deadBytes >= (c.length - dead) / 2,
               !s.pendingCompactions.contains(where: { $0.slot == c.slot }) {
                s.pendingCompactions.append((c.slot, c.epoch, dead))
            }
        }
        s.cache.evictIfNeeded()
    }

    // MARK: VelocityStore

    public func process(_ batch: EventBatch, into matrix: inout FeatureMatrix) throws(StoreError) {
        guard batch.count > 0 else { return }
        // The batch's entities in order of first appearance, each with its frame: its events in batch order.
        var appends = Appends(capacity: batch.keys.count)
        // Each (transaction, entity)'s frame, at the walk's `position`.
        var frameOf = [Int](repeating: -1, count: batch.keys.count)
        for i in 0..<batch.count {
            for e in 0..<batch.entityCount {
                let key = batch.keys[i * batch.entityCount + e]
                guard key != 0 else { continue }
                frameOf[i * batch.entityCount + e] = appends.add(EntitySlot(entity: e, key: key), time: batch.times[i], size: eventSize(e)) {
                    appendEvent(batch, i, e, to: &$0)
                }
            }
        }
        let ttl = Array(String(plan.retention + allowedLateness).utf8)
        var records = RedisPipeline(capacity: batch.count * (80 + 8 * batch.entityCount))
        for i in 0..<batch.count {
            records.begin(6)
            records.argument("SET")
            transactionKey(batch.ids[i], into: &records)
            records.argument(count: 8 * (1 + batch.entityCount)) { record in
                Self.append(UInt64(bitPattern: batch.times[i]), to: &record)
                for e in 0..<batch.entityCount { Self.append(batch.keys[i * batch.entityCount + e], to: &record) }
            }
            records.argument("PX")
            records.argument(ttl)
            records.argument("NX")
        }
        let plan = self.plan
        let lateness = allowedLateness
        try state.withLock { s throws(StoreError) in
            let (set, entities) = try sync(&s, appends, kind: Frame.events, leading: records)
            for r in set { if let m = r.errorMessage { throw StoreError(.protocolError, "SET: \(m)") } }
            // Every entity now holds exactly the frames before this batch's own: evaluate in
            // batch order, applying the batch's events as the walk goes. SET NX answered nil: the
            // transaction was recorded before (a redelivery).
            batch.walk(plan: plan, lateness: lateness, into: &matrix, duplicate: { set[$0] == .null }, scratch: &s.scratch) { _, _, position, body in
                body(&entities[frameOf[position]].state)
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
                gets.argument("GET")
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
                appends.add(slot, time: time, size: 16) { frame in
                    Self.append(l.id, to: &frame)
                    Self.append(UInt64(bitPattern: time), to: &frame)
                }
                marks.append((slot, l.id, time))
            }
        }
        guard !appends.slots.isEmpty else { return matched }
        let plan = self.plan
        try state.withLock { s throws(StoreError) in
            let entities = try sync(&s, appends, kind: Frame.labels, leading: RedisPipeline()).entities
            for m in marks {
                let c = entities[appends.index[m.slot]!]
                guard let i = c.state.events.index(time: m.time, id: m.id) else { continue }
                c.state.setLabel(2, at: i, plan: plan.entities[m.slot.entity])
            }
            settle(&s, entities: entities)
        }
        return matched
    }

    /// The distinct events recorded in an entity's log in log order (a redelivery counts where
    /// it first appears), and those labelled fraud (tests and diagnostics). `key`: any of the
    /// entity's log keys (`P:x:{E:H}:n`) or `P:x:{E:H}`; the current epoch is read.
    public func streamContents(_ key: String) throws(StoreError) -> (events: [UInt64], fraud: Set<UInt64>) {
        guard let open = key.firstIndex(of: "{"), let close = key[open...].firstIndex(of: "}"),
              let colon = key[open..<close].firstIndex(of: ":"), let e = Int(key[key.index(after: open)..<colon]),
              plan.entities.indices.contains(e), let hash = UInt64(key[key.index(after: colon)..<close], radix: 16)
        else { throw StoreError(.protocolError, "not an entity log key: \(key)") }
        let slot = EntitySlot(entity: e, key: hash)
        var get = RedisPipeline()
        get.begin(2)
        get.argument("GET")
        pointerKey(slot, into: &get)
        let epoch = try state.withLock { s throws(StoreError) in try Self.epoch(roundTrip(&s, get)[0]) }
        var read = RedisPipeline()
        read.begin(2)
        read.argument("GET")
        logKey(slot, epoch, into: &read)
        let reply = try state.withLock { s throws(StoreError) in try roundTrip(&s, read)[0] }
        guard case .string(let log) = reply else { return ([], []) }
        var events: [UInt64] = [], seen = Set<UInt64>(), fraud = Set<UInt64>()
        var at = 0
        while log.count - at >= Frame.overhead {
            let kind = log[at], size = Frame.payloadSize(log[...], at)
            let payload = log[(at + Frame.overhead)..<min(log.count, at + Frame.overhead + size)]
            if kind == Frame.seal { break }
            let step = kind == Frame.events ? eventSize(e) : kind == Frame.labels ? 16 : size
            var p = payload.startIndex
            while kind != Frame.header, p + step <= payload.endIndex {
                let id = Self.read(payload[p...], 0)
                if kind == Frame.labels { fraud.insert(id) } else if seen.insert(id).inserted { events.append(id) }
                p += step
            }
            at += Frame.overhead + size
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

    /// Whether Redis may delete this store's keys when its memory is full.
    public enum EvictionCheck: Sendable, Equatable {
        /// No `maxmemory`, or the `noeviction` policy: a full Redis refuses writes, which fail
        /// batches visibly (store errors, degraded verdicts) and lose nothing.
        case safe
        /// A `maxmemory` (bytes) with an evicting policy: under memory pressure Redis deletes
        /// entity logs and transaction records, and windows silently lose their history.
        case evicts(policy: String, maxmemory: Int64)
        /// The settings could not be read (`CONFIG` renamed, or not allowed to this user).
        case unknown(String)
    }

    /// Reads `maxmemory` and `maxmemory-policy` from the server this store's connection reaches
    /// (on a cluster, one node: the others are meant to share its configuration).
    /// - Throws: when Redis does not answer.
    public func evictionCheck() throws(StoreError) -> EvictionCheck {
        let replies = try state.withLock { s throws(StoreError) in
            try roundTrip(&s, RedisPipeline([["CONFIG", "GET", "maxmemory"].bytes, ["CONFIG", "GET", "maxmemory-policy"].bytes]))
        }
        func value(_ r: RedisReply) -> String? {
            guard case .array(let pair) = r, pair.count == 2, case .string(let v) = pair[1] else { return nil }
            return String(decoding: v, as: UTF8.self)
        }
        guard let limit = value(replies[0]).flatMap({ Int64($0) }), let policy = value(replies[1]) else {
            return .unknown(replies.compactMap(\.errorMessage).first ?? "unexpected CONFIG GET reply")
        }
        return limit == 0 || policy == "noeviction" ? .safe : .evicts(policy: policy, maxmemory: limit)
    }

    /// Sends arbitrary commands (tests, benchmarks, administration).
    public func command(_ args: [String]) throws(StoreError) -> RedisReply { try command(bytes: args.bytes) }

    /// One command of binary arguments.
    func command(bytes args: [[UInt8]]) throws(StoreError) -> RedisReply {
        try state.withLock { s throws(StoreError) in try roundTrip(&s, RedisPipeline([args]))[0] }
    }
}
