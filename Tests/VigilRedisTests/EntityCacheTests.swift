import Testing
import VigilFeatures
@testable import VigilRedis

@Suite("Entity cache")
struct EntityCacheTests {
    static let plan = try! FeaturePlan(spec: .default)

    static func entity() -> CachedEntity { CachedEntity(plan: plan.entities[0], now: .now) }

    @Test("over budget, the least recently used entities go first; a use keeps an entity, however old its first use")
    func evictsLeastRecentlyUsed() {
        var cache = EntityCache(budget: 1 << 30)
        for k in 1...1000 { cache.insert(EntitySlot(entity: 0, key: UInt64(k)), Self.entity()) }
        // Use the first 100 again, many times.
        for _ in 0..<30 { for k in 1...100 { cache.touch(EntitySlot(entity: 0, key: UInt64(k))) } }
        let each = cache.bytes / 1000
        var small = EntityCache(budget: each * 500)
        for k in 1...1000 {
            small.insert(EntitySlot(entity: 0, key: UInt64(k)), Self.entity())
            if k > 50 { for j in 1...50 { small.touch(EntitySlot(entity: 0, key: UInt64(j))) } }
            small.evictIfNeeded()
        }
        #expect(small.bytes <= each * 500)
        #expect(small.evictions > 0)
        // The 50 used after every insert and the newest inserts stay; the oldest unused go.
        #expect((1...50).allSatisfy { small.entities[EntitySlot(entity: 0, key: UInt64($0))] != nil })
        #expect((990...1000).allSatisfy { small.entities[EntitySlot(entity: 0, key: UInt64($0))] != nil })
        #expect((51...400).allSatisfy { small.entities[EntitySlot(entity: 0, key: UInt64($0))] == nil })
        #expect(cache.count == 1000 && cache.evictions == 0)
        // Emptied and refilled, the list still orders by use (removeAll unlinks every entity).
        small.removeAll()
        #expect(small.count == 0 && small.bytes == 0)
        for k in 1...1000 {
            small.insert(EntitySlot(entity: 0, key: UInt64(k)), Self.entity())
            small.touch(EntitySlot(entity: 0, key: 1))
            small.evictIfNeeded()
        }
        #expect(small.entities[EntitySlot(entity: 0, key: 1)] != nil && small.entities[EntitySlot(entity: 0, key: 2)] == nil)
        #expect(small.entities[EntitySlot(entity: 0, key: 1000)] != nil && small.bytes <= each * 500)
    }

    @Test("a removed or re-inserted entity leaves the recency list whole")
    func removeAndReinsert() {
        var one = EntityCache(budget: 1 << 30)
        one.insert(EntitySlot(entity: 0, key: 1), Self.entity())
        let each = one.bytes
        // Holds 7; evicts down to 6 (a buffer's capacity, so an entity's bytes, varies by a few bytes with the allocator).
        var cache = EntityCache(budget: 7 * each + each / 2)
        func slot(_ k: UInt64) -> EntitySlot { EntitySlot(entity: 0, key: k) }
        for k in 1...7 { cache.insert(slot(UInt64(k)), Self.entity()) }
        cache.remove(slot(1))  // the oldest
        cache.remove(slot(7))  // the newest
        cache.remove(slot(4))  // one in the middle
        cache.insert(slot(3), Self.entity())  // replaced: now the newest. Order: 2 5 6 3
        for k in 8...11 {
            cache.insert(slot(UInt64(k)), Self.entity())
            cache.evictIfNeeded()
        }
        // 8 entities after 11 arrived: the two least recently used, 2 and 5, went.
        #expect(Set(cache.entities.keys.map(\.key)) == [6, 3, 8, 9, 10, 11])
        #expect(cache.evictions == 2 && cache.count == 6)
    }

    @Test("an entity's bytes count its buffers' capacity and allocations, not only its events")
    func bytesCountAllocations() {
        var cache = EntityCache(budget: 1 << 30)
        cache.insert(EntitySlot(entity: 0, key: 1), Self.entity())
        // An empty entity still costs its object, dictionary slot and window arrays.
        #expect(cache.bytes > 500)
    }
}
