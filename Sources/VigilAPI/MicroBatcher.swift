import DequeModule
import Foundation
import Vigil

/// How the synchronous API gathers requests into scorer batches.
public struct MicroBatchConfiguration: Sendable, Equatable {
    /// Longest a request waits for others to join its batch. Default: zero, batching without
    /// waiting: a batch is whatever arrived while the previous one was scored, so batches grow
    /// with the load and an idle scorer answers at once. Measured on the daemon (`docs/api.md`),
    /// a wait cost latency and never paid for itself: the scorer is a tenth of a request's CPU.
    /// Worth raising only where each batch has a large fixed cost.
    public var maxWait: Duration = .zero
    /// Most transactions in one batch. Default: 256.
    public var maxBatch = 256
    /// Most transactions waiting; past it requests are refused (429 / `RESOURCE_EXHAUSTED`)
    /// rather than queued without bound. Default: 1024.
    public var maxPending = 1024
    public init() {}
}

/// Why a request was not scored.
public enum ScoringRefusal: Error, Sendable, Equatable {
    /// Too many transactions waiting: try again shortly.
    case saturated
    /// The request's own budget ran out before its batch started.
    case deadlineExceeded
    /// The server is shutting down.
    case stopping
}

/// Gathers concurrent scoring requests into one ``Scorer`` batch, so the synchronous path keeps
/// the Kafka path's batch efficiency.
///
/// A batch closes at the first of: it holds ``MicroBatchConfiguration/maxBatch`` transactions;
/// its first request has waited ``MicroBatchConfiguration/maxWait`` (by default not at all); no
/// request has arrived for an eighth of `maxWait` (the burst is over); a request's own deadline
/// would otherwise pass (the recent batch time is kept
/// in reserve: a short budget costs batching, not lateness). Requests that arrive while a batch
/// is being scored form the next one, so batches grow with the load by themselves. Batches are scored one at a time on
/// a thread of the batcher's own (store calls block), in arrival order, so the store sees the
/// requests in the order they came.
public final class MicroBatcher: @unchecked Sendable {
    public typealias Score = @Sendable ([Transaction]) -> [Verdict]

    struct Pending {
        var transactions: [Transaction]
        var deadline: ContinuousClock.Instant?
        var arrived: ContinuousClock.Instant
        var reply: CheckedContinuation<Result<[Verdict], ScoringRefusal>, Never>
    }

    /// What one closed batch looked like, for metrics.
    public struct BatchReport: Sendable {
        public var transactions: Int
        public var requests: Int
        public var expired: Int
        /// From the batch's first request to the batch closing.
        public var waited: Duration
        /// Scoring the batch.
        public var duration: Duration
    }

    public let configuration: MicroBatchConfiguration
    private let score: Score
    private let onBatch: @Sendable (BatchReport) -> Void
    private let clock = ContinuousClock()

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue = Deque<Pending>()
    private var queued = 0
    private var lastArrival: ContinuousClock.Instant?
    /// The earliest deadline among the queued requests.
    private var earliestDeadline: ContinuousClock.Instant?
    private var stopping = false
    private var finished = false
    /// Recent time to score a batch, kept in reserve before a request's deadline.
    private var recentBatch: Duration = .zero

    public init(configuration: MicroBatchConfiguration, onBatch: @escaping @Sendable (BatchReport) -> Void = { _ in }, score: @escaping Score) {
        self.configuration = configuration
        self.score = score
        self.onBatch = onBatch
        let thread = Thread { [self] in run() }
        thread.name = "vigil-api-batcher"
        thread.start()
    }

    /// Transactions waiting for a batch.
    public var pending: Int { condition.withLock { queued } }

    /// Scores `transactions` (one request) in the next batch; verdicts in the same order.
    /// - Throws: ``ScoringRefusal`` when saturated, past `deadline`, or stopping.
    public func score(_ transactions: [Transaction], deadline: ContinuousClock.Instant? = nil) async throws(ScoringRefusal) -> [Verdict] {
        guard !transactions.isEmpty else { return [] }
        let now = clock.now
        let result = await withCheckedContinuation { (reply: CheckedContinuation<Result<[Verdict], ScoringRefusal>, Never>) in
            let refusal: ScoringRefusal? = condition.withLock {
                if stopping { return .stopping }
                // One request larger than the whole queue still gets in when nothing waits.
                if queued > 0, queued + transactions.count > configuration.maxPending { return .saturated }
                queue.append(Pending(transactions: transactions, deadline: deadline, arrived: now, reply: reply))
                let wasIdle = queue.count == 1
                queued += transactions.count
                lastArrival = now
                if let deadline { earliestDeadline = min(earliestDeadline ?? deadline, deadline) }
                // Wake the batcher only when it has something new to decide: work after idling, a
                // full batch, or a deadline that may close the batch sooner. Otherwise it
                // re-reads the arrivals when its wait ends (one wake-up per batch, not per request).
                if wasIdle || queued >= configuration.maxBatch || deadline != nil { condition.broadcast() }
                return nil
            }
            if let refusal { reply.resume(returning: .failure(refusal)) }
        }
        return try result.get()
    }

    /// Scores what is queued, refuses new requests, and ends the thread; returns when done.
    public func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while !finished { condition.wait() }
        }
    }

    private func run() {
        while let batch = nextBatch() {
            let start = clock.now
            let waited = start - batch[0].arrived
            var live: [Pending] = []
            var expired = 0
            for p in batch {
                if let d = p.deadline, d < start {
                    p.reply.resume(returning: .failure(.deadlineExceeded))
                    expired += 1
                } else {
                    live.append(p)
                }
            }
            let transactions = live.flatMap(\.transactions)
            let verdicts = transactions.isEmpty ? [] : score(transactions)
            let duration = clock.now - start
            condition.withLock { recentBatch = (recentBatch * 3 + duration) / 4 }
            // Metrics first, so a caller that has its answer also sees its batch counted.
            onBatch(BatchReport(transactions: transactions.count, requests: batch.count, expired: expired, waited: waited, duration: duration))
            var offset = 0
            for p in live {
                p.reply.resume(returning: .success(Array(verdicts[offset..<(offset + p.transactions.count)])))
                offset += p.transactions.count
            }
        }
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }

    /// Waits for a batch to close and takes it; nil once stopping with nothing queued.
    private func nextBatch() -> [Pending]? {
        condition.withLock {
            while queue.isEmpty, !stopping { condition.wait() }
            guard let first = queue.first else { return nil }
            while queued < configuration.maxBatch, !stopping {
                var close = min(first.arrived + configuration.maxWait, (lastArrival ?? first.arrived) + configuration.maxWait / 8)
                if let d = earliestDeadline { close = min(close, d - recentBatch) }
                let wait = close - clock.now
                if wait <= .zero { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: wait.seconds))
            }
            var batch: [Pending] = []
            var count = 0
            while let p = queue.first, batch.isEmpty || count + p.transactions.count <= configuration.maxBatch {
                batch.append(queue.removeFirst())
                count += p.transactions.count
            }
            queued -= count
            earliestDeadline = queue.lazy.compactMap(\.deadline).min()
            return batch
        }
    }
}
