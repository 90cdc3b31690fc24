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
struct EntityCache {
    let budget: Int
    var entities: [EntitySlot: CachedEntity] = [:]
    private(set) var bytes = 0
    private var tick: UInt64 = 0
    private(set) var evictions = 0

    init(budget: Int) { self.budget = budget }

    var count: Int { entities.count }

    /// Marks the entity used now and re-counts its bytes (after it changed in place).
    mutating func touch(_ slot: EntitySlot) {
        tick += 1
        guard let e = entities[slot] else { return }
        let now = e.state.approximateBytes + 24 * e.entries.count + 96
        bytes += now - e.bytes
        e.bytes = now
        e.lastUse = tick
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
        bytes = 0
    }

    /// Over budget: evicts the least recently used entities down to 90% of it.
    mutating func evictIfNeeded() {
        guard bytes > budget else { return }
        let target = budget / 10 * 9
        for (slot, e) in entities.sorted(by: { $0.value.lastUse < $1.value.lastUse }) {
            guard bytes > target else { break }
            bytes -= e.bytes
            entities.removeValue(forKey: slot)
            evictions += 1
        }
    }
}
