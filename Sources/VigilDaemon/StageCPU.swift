import VigilCore

/// Where the daemon's threads spend their CPU, by pipeline stage: exported as
/// `vigil_cpu_seconds_total{stage}` so an operator (and `scripts/load-bench.sh`) can read the
/// cost of each stage per transaction. Reads the calling thread's CPU clock, so waiting in a poll
/// costs nothing and the other thread's work is never counted twice.
enum Stage: Int, CaseIterable, Sendable {
    /// Fetching messages from the consumer (librdkafka's queue, rebalance callbacks).
    case consume
    /// Transactions and labels decoded from JSON.
    case decode
    /// Velocity features: the store's read, update and write.
    case features
    /// Fraud labels applied to the store.
    case labels
    /// Rules, model, costs and reasons.
    case decide
    /// Verdict JSON and message headers.
    case encode
    /// Metrics of a decided batch and handing its messages to the producer.
    case publish
    /// Delivery reports, retiring acknowledged batches, offset commits, waiting for room.
    case settle
    /// The loop's bookkeeping: heartbeats, gauges, the hand-over between threads.
    case other

    var name: String { String(describing: self) }
}

/// Lap timer over one thread's CPU clock: each ``lap(_:)`` charges the CPU used since the last
/// one to a stage, so the stages add up to the thread's whole CPU time.
struct StageTimer {
    private var last = threadCPUNanoseconds()
    private(set) var spent = [Int64](repeating: 0, count: Stage.allCases.count)

    mutating func lap(_ stage: Stage) {
        let now = threadCPUNanoseconds()
        spent[stage.rawValue] += now - last
        last = now
    }

    /// Starts the next lap here without charging anyone: for time already counted elsewhere.
    mutating func restart() { last = threadCPUNanoseconds() }

    mutating func add(_ nanoseconds: Int64, to stage: Stage) { spent[stage.rawValue] += nanoseconds }

    /// What was spent since the last call, per stage; resets the counts.
    mutating func take() -> [Int64] {
        defer { for i in spent.indices { spent[i] = 0 } }
        return spent
    }
}
