import DequeModule
import VigilFeatures

/// One entity's place in Redis: its type (index in the plan) and keyed hash.
struct EntitySlot: Hashable, Sendable {
    let entity: Int
    let key: UInt64
}

/// What this process knows of one entity's stream: the state built from its entries up to `last`.
///
/// A class, so that reading or updating it in the cache never copies the state's columns (a
/// struct copy retained every one of them: a fifth of the store's client time in a profile).
final class CachedEntity {
    var state: EntityState
    /// The last entry applied, `n` of stream id `0-n` (0: none; the stream was empty when read).
    var last: UInt64 = 0
    /// Entries still in the stream with the newest event time they carry, oldest first, so that
    /// entries wholly older than the canonical cutoff can be trimmed from Redis.
    var entries: [(seq: UInt64, newest: Int64)] = []
    /// When this process last refreshed the stream's TTL.
    var refreshed: ContinuousClock.Instant
    var lastUse: UInt64 = 0
    var bytes = 0

    init(plan: EntityPlan, now: ContinuousClock.Instant) {
        state = EntityState(plan: plan)
        refreshed = now
    }

}

/// A bounded cache of entity windows, least recently used evicted first.
///
/// Never a source of truth: an entry is valid exactly while the entity's stream has no entry
/// after `last`, which every append checks (``RedisVelocityStore``). Eviction only costs the next
/// batch that touches the entity one read of its stream.
///
/// Recency is a queue of (entity, tick) records, one appended per use: the entity at the front
/// whose last use is that record's tick is the least recently used one; a record superseded by a
/// later use is skipped. Evicting and using are amortised O(1) — no scan or sort of the cache —
/// and the queue is compacted when stale records outnumber live entities.
struct EntityCache {
    let budget: Int
    var entities: [EntitySlot: CachedEntity] = [:]
    private(set) var bytes = 0
    private var tick: UInt64 = 0
    private var uses: Deque<(slot: EntitySlot, tick: UInt64)> = []
    private(set) var evictions = 0

    /// What an entity costs beyond its state and entry list: the object, its slot in the
    /// dictionary and its records in the recency queue.
    static let entityOverhead = MemoryLayout<EntityState>.stride + 64 + 2 * (MemoryLayout<EntitySlot>.stride + 16) + 2 * 24

    init(budget: Int) { self.budget = budget }

    var count: Int { entities.count }

    /// Marks the entity used now and re-counts its bytes (after it changed in place).
    mutating func touch(_ slot: EntitySlot) {
        guard let e = entities[slot] else { return }
        tick += 1
        let now = e.state.approximateBytes + HeapBytes.of(e.entries) + Self.entityOverhead
        bytes += now - e.bytes
        e.bytes = now
        e.lastUse = tick
        uses.append((slot, tick))
        if uses.count > 2 * entities.count + 1024 { compact() }
    }

    mutating func insert(_ slot: EntitySlot, _ e: CachedEntity) {
        remove(slot)
        entities[slot] = e
        touch(slot)
    }

    mutating func remove(_ slot: EntitySlot) {
        if let old = entities.removeValue(forKey: slot) { bytes -= old.bytes }
    }

    mutating func removeAll() {
        entities.removeAll()
        uses.removeAll()
        bytes = 0
    }

    /// Over budget: evicts the least recently used entities down to 90% of it.
    mutating func evictIfNeeded() {
        guard bytes > budget else { return }
        let target = budget / 10 * 9
        while bytes > target, let (slot, used) = uses.popFirst() {
            guard let e = entities[slot], e.lastUse == used else { continue }  // used again since
            bytes -= e.bytes
            entities.removeValue(forKey: slot)
            evictions += 1
        }
    }

    /// Drops the records that a later use superseded, keeping the order of the rest.
    private mutating func compact() {
        let entities = entities
        uses = Deque(uses.filter { entities[$0.slot]?.lastUse == $0.tick })
    }
}
