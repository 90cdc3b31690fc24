import VigilCore
import VigilFeatures

/// Releases labels in event time: a transaction's label becomes known `delay` after it.
///
/// Backtests and training use it to reproduce what the daemon sees online, where labels arrive
/// on the labels topic long after the transaction. A label is applied to the store only once its
/// release time has passed, so no feature ever sees a label that had not arrived.
public struct LabelRelease: Sendable {
    public let delay: Int64
    private var pending: [(release: Int64, label: Label)] = []
    private var head = 0

    public init(delay: Int64) { self.delay = delay }

    /// Queues the labels of transactions as they are replayed (in time order).
    public mutating func enqueue(_ txs: [Transaction]) {
        for tx in txs {
            if let l = tx.label { pending.append((tx.timestamp + delay, Label(transactionID: tx.id, isFraud: l == 1))) }
        }
        if head > 4096, head * 2 > pending.count {
            pending.removeFirst(head)
            head = 0
        }
    }

    /// Labels whose release time is at or before `time`, in release order.
    public mutating func due(at time: Int64) -> [Label] {
        var out: [Label] = []
        while head < pending.count, pending[head].release <= time {
            out.append(pending[head].label)
            head += 1
        }
        return out
    }
}

/// Replays a time-ordered stream in batches the way the daemon would see it.
public enum Replay {
    /// Splits `transactions` into consecutive batches of at most `size`, releasing due labels into
    /// `apply` before each batch (labels due at or before the batch's first event time).
    public static func batches(
        _ transactions: [Transaction], size: Int, labelDelay: Int64?,
        apply: ([Label]) -> Void, body: (ArraySlice<Transaction>) throws -> Void
    ) rethrows {
        var release = labelDelay.map { LabelRelease(delay: $0) }
        var i = 0
        while i < transactions.count {
            let batch = transactions[i..<min(i + size, transactions.count)]
            if var r = release {
                let due = r.due(at: batch.first!.timestamp)
                if !due.isEmpty { apply(due) }
                r.enqueue(Array(batch))
                release = r
            }
            try body(batch)
            i += size
        }
    }
}
