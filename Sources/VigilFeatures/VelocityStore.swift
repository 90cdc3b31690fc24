import DequeModule
import Synchronization
import VigilCore

/// The batch's features: one contiguous row-major `Float` matrix in the model's column order.
/// Missing values are NaN.
public struct FeatureMatrix: Sendable {
    public let schema: FeatureSchema
    public let rows: Int
    public var values: [Float]

    public init(schema: FeatureSchema, rows: Int) {
        self.schema = schema
        self.rows = rows
        self.values = [Float](repeating: .nan, count: rows * schema.count)
    }

    public var columns: Int { schema.count }

    public subscript(row: Int, column: Int) -> Float {
        get { values[row * schema.count + column] }
        set { values[row * schema.count + column] = newValue }
    }

    public func row(_ r: Int) -> ArraySlice<Float> { values[(r * columns)..<((r + 1) * columns)] }

    public subscript(row: Int, name: String) -> Float? { schema.index(of: name).map { self[row, $0] } }
}

/// What the stores record of each transaction, already hashed: no raw identifier in here.
///
/// Flat columns for the whole batch; entity `e` of event `i` is at `i * entityCount + e`.
public struct EventBatch: Sendable {
    public var count: Int { times.count }
    public let entityCount: Int
    public let trackedOffsets: [Int]
    public let trackedTotal: Int
    public var ids: [UInt64] = []
    public var times: [Int64] = []
    public var amounts: [Double] = []
    public var lats: [Double] = []
    public var lons: [Double] = []
    /// Keyed hash of each entity's value, 0 when the transaction has none.
    public var keys: [UInt64] = []
    public var filterBits: [UInt8] = []
    public var tracked: [UInt64] = []

    public init(plan: FeaturePlan, capacity: Int = 0) {
        entityCount = plan.entities.count
        var offsets: [Int] = []
        var total = 0
        for e in plan.entities {
            offsets.append(total)
            total += e.tracked.count
        }
        trackedOffsets = offsets
        trackedTotal = total
        ids.reserveCapacity(capacity)
        times.reserveCapacity(capacity)
        amounts.reserveCapacity(capacity)
        keys.reserveCapacity(capacity * entityCount)
        tracked.reserveCapacity(capacity * total)
    }
}

/// A store failure. The scorer turns it into degraded verdicts, never a crash.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The store cannot be reached (connection refused, breaker open).
        case unavailable
        /// The store did not answer within its deadline.
        case timeout
        /// The store answered something unexpected.
        case protocolError
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// Where entity events live between transactions.
///
/// Semantics every implementation keeps (and the parity tests check):
/// - The features of an event come only from events of the same entity strictly before its time.
/// - Events are processed in batch order: the second transaction of a card in a batch sees the first.
/// - Recording is idempotent on the transaction id: a redelivered transaction changes nothing.
/// - Events older than the entity's longest window plus an allowed lateness are dropped; within
///   that lateness a redelivered or late transaction gets exactly the features it would have had.
public protocol VelocityStore: AnyObject, Sendable {
    var plan: FeaturePlan { get }

    /// For each event in order, writes its entity features into `matrix` (row = event index) from
    /// the events strictly before it, then records it.
    func process(_ batch: EventBatch, into matrix: inout FeatureMatrix) throws(StoreError)

    /// Applies fraud labels to recorded transactions (by hashed id). Returns how many matched.
    @discardableResult
    func apply(labels: [(id: UInt64, fraud: Bool)]) throws(StoreError) -> Int
}

/// The in-process store: per-entity sorted event columns and incremental windows, no I/O
/// unless journaled.
///
/// The default for embedded use, backtests and tests; the reference the Redis store is checked
/// against. Thread-safe (one lock; batches are processed one at a time). With a
/// ``JournalConfiguration`` it logs every batch and label before applying it and rebuilds its
/// state from the log when opened, so a restarted process scores redeliveries exactly as before.
public final class InMemoryVelocityStore: VelocityStore {
    public let plan: FeaturePlan
    /// How long past its longest window an event is kept, so that a redelivered or late
    /// transaction up to this much older than the newest one still gets exact features.
    /// Default: 24 hours.
    public let allowedLateness: Int64

    struct State: ~Copyable {
        var entities: [HashedTable<EntityState>]
        /// The transactions remembered, in the order recorded (the order they are forgotten
        /// in): idempotence and label lookup, and the transactions' expiry queue.
        var transactions: RememberedTransactions
        var newest: Int64 = .min
        /// Transactions recorded so far: the expiry queues' clock.
        var recorded = 0
        /// Expiry queues besides ``transactions`` (the in-memory analogue of Redis TTLs): per
        /// entity type one record per entity, due at its newest event's time when it was
        /// queued. `seq`: ``recorded`` when queued.
        var entityQueues: [Deque<(time: Int64, seq: Int, key: UInt64)>]
        var journal: StoreJournal?
        /// Expiry queue steps taken so far (tests hold a batch's share to its bound).
        var expirySteps = 0
        /// Steps allowed beyond a batch's usual share while the queues are behind (see ``record``).
        var expiryCatchUp = 0
        /// Working memory kept across batches (a batch of one then allocates none of it).
        var scratch: [WindowAggregates]
        var duplicates: [Bool] = []
        var seenInBatch = Set<UInt64>()
    }

    let state: Mutex<State>
    /// Per entity type, how many of an entity's marks are window ends (to prefetch).
    private let windowEnds: [Int]

    /// However old in event time, the last this many transactions' ids and entities are kept:
    /// a replay compresses days into seconds, where Redis's TTLs (wall-clock) forget nothing,
    /// and the two stores must agree on a redelivery's features there too.
    let remembered: Int

    public convenience init(plan: FeaturePlan, allowedLateness: Int64 = 86_400_000) {
        self.init(plan: plan, allowedLateness: allowedLateness, remembered: 65_536)
    }

    init(plan: FeaturePlan, allowedLateness: Int64, remembered: Int) {
        self.plan = plan
        self.allowedLateness = allowedLateness
        self.remembered = remembered
        windowEnds = plan.entities.map(WindowState.distinctOffset)
        state = Mutex(State(entities: Array(repeating: HashedTable(), count: plan.entities.count),
                            transactions: RememberedTransactions(keyCount: plan.entities.count), entityQueues: Array(repeating: [], count: plan.entities.count),
                            scratch: plan.entities.map { WindowAggregates(plan: $0) }))
    }

    /// A journaled store: replays the journal in `journal.directory` (creating it if new), then
    /// logs every batch and label before applying it.
    /// - Throws: the journal's file and byte offset when it cannot be read, is damaged other than
    ///   by a torn last record, or was written for another feature spec or hash secret.
    public convenience init(plan: FeaturePlan, allowedLateness: Int64 = 86_400_000, journal: JournalConfiguration) throws(ConfigurationError) {
        self.init(plan: plan, allowedLateness: allowedLateness)
        try state.withLock { (s: inout State) throws(ConfigurationError) in
            let j = try StoreJournal(configuration: journal, plan: plan) { entry in
                switch entry {
                case .batch(let b):
                    var scratch = FeatureMatrix(schema: plan.schema, rows: b.count)
                    record(b, &s, into: &scratch, evaluate: false)
                case .labels(let l):
                    _ = label(l, &s)
                }
            }
            s.journal = j
        }
    }

    public func process(_ batch: EventBatch, into matrix: inout FeatureMatrix) throws(StoreError) {
        try state.withLock { (s: inout State) throws(StoreError) in
            // Journal first (a full segment rolled over, then the batch): on any failure the
            // batch is not applied, so the state never holds what the journal lacks.
            if let journal = s.journal {
                try journal.maintain(cutoff: s.newest == .min ? .min : s.newest - plan.retention - allowedLateness)
            }
            try s.journal?.append(batch)
            record(batch, &s, into: &matrix, evaluate: true)
        }
    }

    /// Evaluates (or, replaying a journal, only records) a batch and remembers its transactions.
    private func record(_ batch: EventBatch, _ s: inout State, into matrix: inout FeatureMatrix, evaluate: Bool) {
        let plan = self.plan
        // Idempotence: a transaction id already recorded, or earlier in this batch, is a
        // redelivery (as Redis's SET NX answers it).
        var duplicates = s.duplicates, scratch = s.scratch
        s.duplicates = []
        s.scratch = []
        defer {
            s.duplicates = duplicates
            s.scratch = scratch
        }
        duplicates.removeAll(keepingCapacity: true)
        for i in 0..<batch.count {
            let id = batch.ids[i]
            if i + 8 < batch.count { s.transactions.prefetch(batch.ids[i + 8]) }
            duplicates.append(s.transactions.contains(id) || (batch.count > 1 && !s.seenInBatch.insert(id).inserted))
        }
        if batch.count > 1 { s.seenInBatch.removeAll(keepingCapacity: true) }
        let windowEnds = self.windowEnds
        batch.walk(plan: plan, lateness: allowedLateness, into: &matrix, duplicate: { duplicates[$0] }, evaluate: evaluate,
                   scratch: &scratch, lookahead: 4,
                   ahead: { e, key, distance in s.entities[e].prefetchEntity(key, distance: distance, windowEnds: windowEnds[e]) }
        ) { e, key, position, body in
            let p: Int
            if let known = s.entities[e].position(of: key) {
                p = known
            } else {
                p = s.entities[e].insert(key, EntityState(plan: plan.entities[e]))
                // A new entity: queued at its first event's time, when it may first have gone
                // idle; its check then forgets it or re-queues it at its newest event.
                s.entityQueues[e].append((batch.times[position / batch.entityCount], s.recorded, key))
            }
            body(&s.entities[e].values[p])
        }
        for i in 0..<batch.count where !duplicates[i] {
            s.transactions.append(.init(time: batch.times[i], seq: s.recorded, id: batch.ids[i]),
                                  keys: batch.keys[(i * batch.entityCount)..<((i + 1) * batch.entityCount)])
            s.recorded += 1
            s.newest = max(s.newest, batch.times[i])
        }
        // A little more than a batch of this size usually adds to the queues (its transactions,
        // the odd new entity), so forgetting is spread evenly over calls: a batch of one that
        // found its whole allowance due paid for sixteen lookups of entities out of cache, and
        // such calls were a good part of the features stage's slowest percent. While a backlog
        // lasts (a call ends with something still due), each call may take one more step per
        // transaction than the last, up to twice what a batch can add (a transaction and each
        // of its entities), so any backlog drains; and no more: a batch of one once took up to
        // 88 steps, its features stage ×5.
        let most = 2 * batch.count * (batch.entityCount + 1) + 4
        let behind = expire(&s, steps: min(most, batch.count + 3 + s.expiryCatchUp))
        s.expiryCatchUp = behind ? min(most, s.expiryCatchUp + batch.count) : 0
    }

    /// Forgets transaction ids and idle entities past their retention plus the lateness (and
    /// older than the last ``remembered`` transactions), a bounded number of queue steps per
    /// batch, more than a batch adds, so the queues keep up: no pass over everything held, which
    /// stalled a batch for every transaction remembered. Lazy, like Redis's TTLs: what is
    /// forgotten late changes no feature within the allowed lateness, it only holds memory longer.
    /// - Returns: whether it stopped with something still due (a backlog).
    @discardableResult
    func expire(_ s: inout State, steps: Int) -> Bool {
        guard s.newest != .min else { return false }
        let initial = steps
        var steps = steps
        defer { s.expirySteps += initial - steps }
        let cutoff = s.newest - plan.retention - allowedLateness, seq = s.recorded - remembered
        let newest = s.newest
        func entityCutoff(_ e: Int) -> Int64 { newest - plan.entities[e].retention - allowedLateness }
        // Forgetting a transaction touches one index slot out of cache in a store of any size;
        // the ones next in line are loaded eight ahead, as a batch's entities are.
        var ahead = 0
        while steps > 0, let f = s.transactions.entries.first, f.time < cutoff, f.seq < seq {
            while ahead < min(s.transactions.count, 8), ahead < steps {
                s.transactions.prefetch(entry: ahead)
                ahead += 1
            }
            s.transactions.removeFirst()
            ahead -= 1
            steps -= 1
        }
        for e in plan.entities.indices {
            let cutoff = entityCutoff(e)
            while steps > 0, let f = s.entityQueues[e].first, f.time < cutoff, f.seq < seq {
                s.entityQueues[e].removeFirst()
                steps -= 1
                guard let i = s.entities[e].position(of: f.key) else { continue }
                guard let last = s.entities[e].values[i].newestTimeInPlace(), last >= cutoff else {
                    s.entities[e].remove(at: i)
                    continue
                }
                s.entityQueues[e].append((last, s.recorded, f.key))
            }
        }
        guard steps == 0 else { return false }
        if let f = s.transactions.entries.first, f.time < cutoff, f.seq < seq { return true }
        return plan.entities.indices.contains { e in
            guard let f = s.entityQueues[e].first else { return false }
            return f.time < entityCutoff(e) && f.seq < seq
        }
    }

    @discardableResult
    public func apply(labels: [(id: UInt64, fraud: Bool)]) throws(StoreError) -> Int {
        try state.withLock { (s: inout State) throws(StoreError) in
            let matching = labels.filter { s.transactions.contains($0.id) }
            if !matching.isEmpty { try s.journal?.append(labels: matching) }
            return label(matching, &s)
        }
    }

    private func label(_ labels: [(id: UInt64, fraud: Bool)], _ s: inout State) -> Int {
        var matched = 0
        for l in labels {
            guard let tx = s.transactions[l.id] else { continue }
            matched += 1
            for e in 0..<plan.entities.count {
                let key = s.transactions.key(e, of: tx)
                guard key != 0 else { continue }
                guard let p = s.entities[e].position(of: key), let i = s.entities[e].values[p].events.index(time: tx.time, id: l.id) else { continue }
                s.entities[e].values[p].setLabel(l.fraud ? 2 : 1, at: i, plan: plan.entities[e])
            }
        }
        return matched
    }

    /// Bytes the journal holds on disk (0 without one).
    public var journalBytes: Int { state.withLock { $0.journal?.bytes ?? 0 } }

    /// Entities currently held, per entity type (for tests and sizing).
    public var entityCounts: [Int] { state.withLock { s in s.entities.map(\.count) } }

    /// Expiry queue steps taken so far.
    var expiryStepsTaken: Int { state.withLock { $0.expirySteps } }

    /// Transaction ids remembered for idempotence and labels (for tests and sizing).
    public var transactionCount: Int { state.withLock { $0.transactions.count } }
}
