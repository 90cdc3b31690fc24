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
        // Use the first 100 again, many times (stale recency records pile up and are compacted).
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
    }

    @Test("an entity's bytes count its buffers' capacity and allocations, not only its events")
    func bytesCountAllocations() {
        var cache = EntityCache(budget: 1 << 30)
        cache.insert(EntitySlot(entity: 0, key: 1), Self.entity())
        // An empty entity still costs its object, dictionary slot and window arrays.
        #expect(cache.bytes > 500)
    }
}
