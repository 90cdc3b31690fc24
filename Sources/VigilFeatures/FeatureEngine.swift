import VigilCore

/// Turns a batch of transactions into its feature matrix, reading and updating a ``VelocityStore``.
///
/// Stateless apart from the store: the same engine serves the daemon, the library and backtests.
public struct FeatureEngine: Sendable {
    public let plan: FeaturePlan
    public let hasher: KeyedHasher

    public init(plan: FeaturePlan, hasher: KeyedHasher) {
        self.plan = plan
        self.hasher = hasher
    }

    public var schema: FeatureSchema { plan.schema }

    /// The hashed form of a transaction id, as the stores and labels know it.
    public func idHash(_ id: String) -> UInt64 { hasher.hash(id) | 1 }

    /// Hashes identifiers and evaluates filters: what the store records of each transaction.
    public func events(for transactions: [Transaction]) -> EventBatch {
        var b = EventBatch(plan: plan, capacity: transactions.count)
        // A field is often both a key and a tracked value (device_id: the device's key, and
        // tracked by card and customer): each field is hashed once per transaction, remembered
        // in scratch on the stack (a batch of one allocates none of it).
        let fields = TransactionField.allCases.count
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: fields) { hashes in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: fields) { hashedFor in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: plan.entities.count) { bits in
                    hashedFor.initialize(repeating: -1)
                    let scratch = HashScratch(hashes: hashes.baseAddress!, hashedFor: hashedFor.baseAddress!, filterBits: bits.baseAddress!)
                    // Each transaction is passed borrowed, through a buffer pointer (whose elements are
                    // addressed in place): binding one to a local, or the array's subscript here, copies it
                    // (a retain and release of every one of its strings).
                    plan.keyFields.withUnsafeBufferPointer { keys in
                        plan.trackedFields.withUnsafeBufferPointer { tracked in
                            transactions.withUnsafeBufferPointer { t in
                                for i in t.indices { append(t.baseAddress! + i, number: i, to: &b, keys: keys, tracked: tracked, scratch) }
                            }
                        }
                    }
                }
            }
        }
        return b
    }

    /// Each field's hash (`hashes`), valid where `hashedFor` holds the number of the transaction
    /// being appended; each entity's filter bits for it.
    struct HashScratch {
        let hashes: UnsafeMutablePointer<UInt64>
        let hashedFor: UnsafeMutablePointer<Int>
        let filterBits: UnsafeMutablePointer<UInt8>
    }

    private func append(
        _ tx: UnsafePointer<Transaction>, number: Int, to b: inout EventBatch,
        keys: UnsafeBufferPointer<TransactionField>, tracked: UnsafeBufferPointer<TransactionField>, _ s: HashScratch
    ) {
        b.ids.append(idHash(tx.pointee.id))
        b.times.append(tx.pointee.timestamp)
        b.amounts.append(tx.pointee.amount)
        b.lats.append(tx.pointee.lat ?? .nan)
        b.lons.append(tx.pointee.lon ?? .nan)
        // Through a pointer: `tx.pointee` handed to a filter copied the transaction (a retain
        // and release of each of its strings) per filter.
        plan.filterBits(RowContext(transaction: tx, row: UnsafeBufferPointer(start: nil, count: 0)), s.filterBits)
        for e in keys.indices {
            b.keys.append(hashed(keys[e], of: tx, number: number, s))
            b.filterBits.append(s.filterBits[e])
        }
        for f in tracked { b.tracked.append(hashed(f, of: tx, number: number, s)) }
    }

    /// A field's keyed hash, once per transaction; 0 when the field is absent (a real hash is
    /// never 0). The transaction is read in place: only the field's string is retained.
    private func hashed(_ f: TransactionField, of tx: UnsafePointer<Transaction>, number: Int, _ s: HashScratch) -> UInt64 {
        let k = f.ordinal
        if s.hashedFor[k] != number {
            s.hashes[k] = Transaction.string(f, at: tx).map { hasher.hash($0) | 1 } ?? 0
            s.hashedFor[k] = number
        }
        return s.hashes[k]
    }

    /// Computes the features of a batch in order, recording each transaction in the store.
    ///
    /// - Throws: ``StoreError`` when the store fails; the caller decides how to degrade (see
    ///   ``transactionFeatures(_:into:)`` for the features that need no store).
    public func features(_ transactions: [Transaction], store: any VelocityStore) throws(StoreError) -> FeatureMatrix {
        var m = FeatureMatrix(schema: plan.schema, rows: transactions.count)
        try store.process(events(for: transactions), into: &m)
        transactionFeatures(transactions, into: &m)
        return m
    }

    /// Fills the columns computed from the transaction alone (fields, calendar) and then the
    /// derived features. Store columns are left as they are (NaN when the store was unavailable).
    public func transactionFeatures(_ transactions: [Transaction], into m: inout FeatureMatrix) {
        let columns = m.columns
        m.values.withUnsafeMutableBufferPointer { values in
            transactions.withUnsafeBufferPointer { t in
                for i in t.indices { fill(row: values.baseAddress! + i * columns, columns: columns, from: t.baseAddress! + i) }
            }
        }
    }

    private func fill(row: UnsafeMutablePointer<Float>, columns: Int, from transaction: UnsafePointer<Transaction>) {
        for (f, col) in plan.fieldColumns { row[col] = Float(Transaction.number(f, at: transaction)) }
        if !plan.calendarColumns.isEmpty {
            let cal = Timestamp.calendar(transaction.pointee.timestamp)
            for (c, col) in plan.calendarColumns {
                switch c {
                case .hour: row[col] = Float(cal.hour)
                case .weekday: row[col] = Float(cal.weekday)
                case .night: row[col] = cal.hour < 6 ? 1 : 0
                case .weekend: row[col] = cal.weekday >= 5 ? 1 : 0
                }
            }
        }
        plan.writeDerived?(RowContext(transaction: transaction, row: UnsafeBufferPointer(start: row, count: columns)), row)
    }
}
