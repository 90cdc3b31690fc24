import Foundation

/// CPU time another process has used so far, read from Linux's `/proc/<pid>/task/*/schedstat`
/// (nanoseconds on the CPU per thread, exact, where `/proc/<pid>/stat` counts 10 ms ticks): in
/// all, and in librdkafka's own threads (named `rdk:…`). Two samples around a run give the
/// CPU that run cost, without the idle seconds before and after it.
struct ProcessCPU: Sendable {
    var seconds: Double
    var librdkafkaSeconds: Double

    /// The process's threads now (a thread that has exited is no longer counted); nil when the
    /// process is gone or this is not Linux.
    static func sample(pid: Int32) -> ProcessCPU? {
        let tasks = "/proc/\(pid)/task"
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return nil }
        var total = ProcessCPU(seconds: 0, librdkafkaSeconds: 0)
        for t in threads {
            guard let stat = try? String(contentsOfFile: "\(tasks)/\(t)/schedstat", encoding: .utf8),
                  let ns = stat.split(separator: " ").first.flatMap({ Double($0) }) else { continue }
            total.seconds += ns / 1e9
            if let comm = try? String(contentsOfFile: "\(tasks)/\(t)/comm", encoding: .utf8), comm.hasPrefix("rdk:") {
                total.librdkafkaSeconds += ns / 1e9
            }
        }
        return total
    }

    static func - (a: ProcessCPU, b: ProcessCPU) -> ProcessCPU {
        ProcessCPU(seconds: a.seconds - b.seconds, librdkafkaSeconds: a.librdkafkaSeconds - b.librdkafkaSeconds)
    }

    static func + (a: ProcessCPU, b: ProcessCPU) -> ProcessCPU {
        ProcessCPU(seconds: a.seconds + b.seconds, librdkafkaSeconds: a.librdkafkaSeconds + b.librdkafkaSeconds)
    }
}
