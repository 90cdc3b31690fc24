import Foundation
import Vigil

/// The second stage of the daemon's loop on a thread of its own: a batch's decisions (rules,
/// model, reasons) and verdict encoding, while the loop computes the next batch's features.
///
/// Batches come back in the order they went in, so verdicts are published in stream order and
/// offsets are committed as before; only features touch the store, and they stay on the loop's
/// thread in stream order, so a transaction's features are those of the one-thread loop.
final class DecisionStage<Job: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var queued: [Job] = []
    private var finished: [Job] = []
    private var stopping = false
    /// Jobs handed in and not yet taken back (loop thread only).
    private(set) var outstanding = 0
    private var thread: Thread?

    /// Starts the thread; `work` runs on it, one job at a time, in order.
    init(name: String, work: @escaping @Sendable (Job) -> Job) {
        let t = Thread { [self] in  // held until stop() ends the loop
            while let job = next() {
                let done = work(job)
                condition.withLock {
                    finished.append(done)
                    condition.broadcast()
                }
            }
        }
        t.name = name
        thread = t
        t.start()
    }

    private func next() -> Job? {
        condition.withLock {
            while queued.isEmpty, !stopping { condition.wait() }
            return queued.isEmpty ? nil : queued.removeFirst()
        }
    }

    /// Hands a job to the stage.
    func submit(_ job: Job) {
        outstanding += 1
        condition.withLock {
            queued.append(job)
            condition.broadcast()
        }
    }

    /// Finished jobs in submission order, waiting up to `timeout` for the first when none is
    /// ready yet (and some is outstanding).
    func take(waiting timeout: Duration = .zero) -> [Job] {
        guard outstanding > 0 else { return [] }
        let jobs = condition.withLock {
            if finished.isEmpty, timeout > .zero {
                let deadline = Date(timeIntervalSinceNow: timeout.seconds)
                while finished.isEmpty, condition.wait(until: deadline) {}
            }
            defer { finished.removeAll(keepingCapacity: true) }
            return finished
        }
        outstanding -= jobs.count
        return jobs
    }

    /// Lets the thread finish what is queued and end.
    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }
}
