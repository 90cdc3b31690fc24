import VigilFeatures

/// One entity's place in Redis: its type (index in the plan) and keyed hash.
struct EntitySlot: Hashable, Sendable {
    let entity: Int
    let key: UInt64
}

/// What this process knows of one entity's log: the state built from its first `length` bytes.
///
/// A class, so that reading or updating it in the cache never copies the state's columns (a
/// struct copy retained every one of them: a fifth of the store's client time in a profile).
final class CachedEntity {
    var state: EntityState
    /// The log's epoch (its key's suffix), which a compaction moves on by one.
    var epoch: UInt64 = 0
    /// Bytes of the epoch's log applied (0: none; the log was empty when read).
    var length = 0
    /// Where the epoch's first frame after its header starts.
    var base = 0
    /// The frames applied from this epoch with the newest event time each carries, oldest first,
    /// so that a prefix wholly older than the canonical cutoff can be compacted away.
    var frames: [(end: Int, newest: Int64)] = []
    /// How many of `frames`, from the first, are known to hold only events past the cutoff
    /// (which only grows): each batch resumes the scan there instead of starting over.
    var deadFrames = 0
    /// When this process last refreshed the log's TTL, and last used the entity.
    var refreshed: ContinuousClock.Instant
    var used: ContinuousClock.Instant
    var bytes = 0
    /// Its place in the cache and its neighbours in the cache's recency list (less and more
    /// recently used); set while cached. The links do not own: the cache's dictionary holds
    /// every linked entity, and an entity is unlinked before it leaves it, so moving one to the
    /// list's end costs no reference counting.
    var slot = EntitySlot(entity: 0, key: 0)
    unowned(unsafe) var older: CachedEntity?
    unowned(unsafe) var newer: CachedEntity?

    init(plan: EntityPlan, now: ContinuousClock.Instant) {
        state = EntityState(plan: plan)
        refreshed = now
        used = now
    }
}

/// A bounded cache of entity windows, least recently used evicted first.
///
/// Never a source of truth: an entry is exact for the first `length` bytes of the entity's log,
/// which every append checks (``RedisVelocityStore``). Eviction only costs the next batch that
/// touches the entity one read of its log.
///
/// Recency is a doubly linked list through the entities themselves, least recently used first:
/// a use moves an entity to the end, an eviction takes the first. Every operation is O(1) in
/// the worst case, with no pass over the cache: an earlier queue of use records, compacted when
/// stale records outnumbered entities, stalled a batch for a pass over every cached entity
/// (every ~10 s in a 2,000 tx/s soak, 100–250 ms once the cache held a few hundred thousand).
struct EntityCache {
    let budget: Int
    private(set) var entities: [EntitySlot: CachedEntity] = [:]
    private(set) var bytes = 0
    /// The ends of the recency list (held by ``entities``, as every linked entity is).
    private unowned(unsafe) var oldest: CachedEntity?
    private unowned(unsafe) var newest: CachedEntity?
    private(set) var evictions = 0

    /// What an entity costs beyond its state and frame list: the object, its slot in the
    /// dictionary and its list links.
    static let entityOverhead = MemoryLayout<EntityState>.stride + 96 + MemoryLayout<EntitySlot>.stride + 16 + 2 * 24

    init(budget: Int) { self.budget = budget }

    var count: Int { entities.count }

    /// Marks the entity used now and re-counts its bytes (after it changed in place).
    mutating func touch(_ slot: EntitySlot) {
        if let e = entities[slot] { touch(e) }
    }

    /// ``touch(_:)`` for an entity held in hand (it must be cached): no lookup.
    mutating func touch(_ e: CachedEntity) {
        assert(entities[e.slot] === e, "touching an entity the cache does not hold")
        let now = Self.bytes(of: &e.state) + HeapBytes.of(e.frames) + Self.entityOverhead
        bytes += now - e.bytes
        e.bytes = now
        if e !== newest {
            unlink(e)
            append(e)
        }
    }

    mutating func insert(_ slot: EntitySlot, _ e: CachedEntity) {
        remove(slot)
        e.slot = slot
        entities[slot] = e
        append(e)
        touch(e)
    }

    mutating func remove(_ slot: EntitySlot) {
        guard let old = entities.removeValue(forKey: slot) else { return }
        bytes -= old.bytes
        unlink(old)
    }

    /// Empties the cache, leaving no entity a link to another (a batch may still hold some).
    mutating func removeAll() {
        for e in entities.values {
            e.older = nil
            e.newer = nil
        }
        oldest = nil
        newest = nil
        entities.removeAll()
        bytes = 0
    }

    /// Over budget: evicts the least recently used entities down to 90% of it.
    mutating func evictIfNeeded() {
        guard bytes > budget else { return }
        let target = budget / 10 * 9
        while bytes > target, let e = oldest {
            unlink(e)
            entities.removeValue(forKey: e.slot)
            bytes -= e.bytes
            evictions += 1
        }
    }

    /// The state's bytes, read in place: a getter called on the object's stored state copies
    /// the whole state first (a retain and a release of every buffer it holds).
    private static func bytes(of state: inout EntityState) -> Int { state.approximateBytes }

    private mutating func append(_ e: CachedEntity) {
        e.older = newest
        e.newer = nil
        if let n = newest { n.newer = e } else { oldest = e }
        newest = e
    }

    private mutating func unlink(_ e: CachedEntity) {
        if let o = e.older { o.newer = e.newer } else if oldest === e { oldest = e.newer }
        if let n = e.newer { n.older = e.older } else if newest === e { newest = e.older }
        e.older = nil
        e.newer = nil
    }
}
