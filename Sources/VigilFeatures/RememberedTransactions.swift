import DequeModule

/// The transactions an in-memory store remembers, for idempotence and labels: in the order they
/// were recorded, which is the order they are forgotten in, with an index by id.
///
/// Forgetting the oldest takes it off the front of ``entries`` and its id out of the index: one
/// slot out of cache, which ``prefetch(entry:)`` loads from the ids next in line. Held in a
/// ``HashedTable``, each removal also moved the last value into the hole and re-pointed its
/// slot, three more lines out of cache in an aged store (about 290 ns a transaction).
struct RememberedTransactions {
    /// A plain value: forgetting one releases nothing and reads nothing but its id.
    struct Entry {
        var time: Int64
        /// The store's count of transactions recorded when this one was: consecutive along
        /// ``entries``, so an entry's place is its `seq` minus the first one's.
        var seq: Int
        var id: UInt64
    }

    private(set) var entries: Deque<Entry> = []
    /// Each entry's entity keys, ``keyCount`` of them, in the order of ``entries``: apart, as
    /// only labels read them. Kept in the entry (up to eight inline and an array for more), they
    /// made it 112 bytes with a reference to release, where the three fields take 24.
    private var keys: Deque<UInt64> = []
    let keyCount: Int
    /// id → `seq`.
    private var index = SlotIndex()

    init(keyCount: Int) { self.keyCount = keyCount }

    var count: Int { entries.count }

    func contains(_ id: UInt64) -> Bool { index.value(of: id) != nil }

    subscript(id: UInt64) -> Entry? {
        guard let seq = index.value(of: id), !entries.isEmpty else { return nil }
        return entries[place(seq)]
    }

    /// Entity key `e` of a remembered transaction.
    func key(_ e: Int, of entry: Entry) -> UInt64 { keys[place(entry.seq) * keyCount + e] }

    /// Where the entry recorded as `seq` is in ``entries`` (there must be one).
    private func place(_ seq: Int) -> Int { seq - entries[0].seq }

    /// Remembers a transaction that is not remembered yet, with its ``keyCount`` entity keys;
    /// `seq` follows the last entry's.
    mutating func append(_ entry: Entry, keys entryKeys: some Collection<UInt64>) {
        precondition(entries.last.map { entry.seq == $0.seq + 1 } ?? true, "RememberedTransactions: seq \(entry.seq) does not follow the last")
        precondition(entryKeys.count == keyCount, "RememberedTransactions: \(entryKeys.count) keys, not \(keyCount)")
        index.insert(entry.id, entry.seq)
        entries.append(entry)
        keys.append(contentsOf: entryKeys)
    }

    /// Forgets the oldest.
    mutating func removeFirst() {
        index.remove(entries.removeFirst().id)
        keys.removeFirst(keyCount)
    }

    /// Starts loading the slot a lookup of `id` begins at.
    @inline(__always)
    func prefetch(_ id: UInt64) { index.prefetch(id) }

    /// Starts loading the index slot of the entry `k` places from the front, which
    /// ``removeFirst()`` touches when its turn comes.
    @inline(__always)
    func prefetch(entry k: Int) { index.prefetch(entries[k].id) }
}
