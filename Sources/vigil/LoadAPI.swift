import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Vigil
import VigilAPI
import VigilSimulator

/// Open-loop load on the synchronous API: single-transaction requests at a fixed rate, over
/// HTTP keep-alive connections or one gRPC (HTTP/2) connection, each request timed from when it
/// was *due*, not from when it was sent (so a slow server cannot hide its queueing by slowing
/// the load down: no coordinated omission).
struct LoadAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load-api",
        abstract: "Drive vigild's scoring API (HTTP or gRPC) at a fixed rate and report latency percentiles.")

    @Option(help: "host:port of the HTTP API.") var http: String?
    @Option(help: "host:port of the gRPC API.") var grpc: String?
    @Option(help: "Requests per second.") var rate: Double = 1000
    @Option(help: "Seconds of load (after a 1 s warm-up at the same rate).") var duration: Double = 5
    @Option(help: "HTTP keep-alive connections, each on its own thread.") var connections = 32
    @Option(help: "Simulated transactions to draw requests from.") var simulate = 50_000
    @Option(help: "Seed of the simulated stream.") var seed: UInt64 = 5
    @Option(help: "Write a one-object JSON summary here.") var summaryJSON: String?

    // Synchronous like every `vigil` command (an async root command would run them all on the
    // concurrency pool, whose threads `vigil dev-broker` could not shield from its signals).
    func run() throws {
        guard (http == nil) != (grpc == nil), let target = http ?? grpc else { throw ValidationError("give one of --http and --grpc") }
        let parts = target.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw ValidationError("the target is host:port") }
        let host = String(parts[0])
        let token = ProcessInfo.processInfo.environment["VIGIL_API_TOKEN"]
        var options = Simulator.Options(transactions: simulate, days: 2, seed: seed)
        options.start = Int64(Date().timeIntervalSince1970 * 1000) - 2 * 86_400_000
        let bodies = Simulator(options: options).generate().map { Array(Simulator.json($0).utf8) }
        let warmup = Int(rate)  // one second
        let total = warmup + Int(rate * duration)
        guard total <= bodies.count else { throw ValidationError("--simulate must be at least \(total) (rate × (duration + 1))") }

        let results = Tally(count: total)
        let clock = ContinuousClock()
        let start = clock.now + .milliseconds(200)
        let interval = 1.0 / rate
        if grpc != nil {
            let failure = Mutex<(any Error)?>(nil)
            let done = DispatchSemaphore(value: 0)
            Task {
                do {
                    try await Self.grpcLoad(host: host, port: Int(port), token: token, bodies: bodies, total: total, start: start, interval: interval, results: results)
                } catch {
                    failure.withLock { $0 = error }
                }
                done.signal()
            }
            done.wait()
            if let error = failure.withLock({ $0 }) { throw error }
        } else {
            httpLoad(host: host, port: port, token: token, bodies: bodies, total: total, start: start, interval: interval, results: results)
        }
        try report(results.state.withLock { $0 }, warmup: warmup, total: total, start: start, interval: interval)
    }

    /// One thread per connection, each sending its share of the schedule.
    func httpLoad(host: String, port: UInt16, token: String?, bodies: [[UInt8]], total: Int, start: ContinuousClock.Instant,
                  interval: Double, results: Tally) {
        let clock = ContinuousClock()
        let connections = self.connections
        let threads = (0..<connections).map { c in
            Thread {
                var connection: HTTPConnection?
                var i = c
                while i < total {
                    let due = start + .seconds(Double(i) * interval)
                    let wait = due - clock.now
                    if wait > .zero { Thread.sleep(forTimeInterval: wait.seconds) }
                    var status = 0
                    for _ in 0..<2 {  // once more on a fresh connection if the old one was closed
                        if connection == nil { connection = try? HTTPConnection(host: host, port: port) }
                        guard let conn = connection else { break }
                        if let s = try? conn.post("/v1/score", body: bodies[i], token: token) {
                            status = s
                            break
                        }
                        connection = nil
                    }
                    let latency = clock.now - due
                    results.state.withLock { $0.record(i, status: status, latency: latency) }
                    i += connections
                }
            }
        }
        threads.forEach { $0.start() }
        while results.state.withLock({ $0.finished }) < total { Thread.sleep(forTimeInterval: 0.1) }
    }

    /// One HTTP/2 connection; a task per request, started when it is due.
    static func grpcLoad(host: String, port: Int, token: String?, bodies: [[UInt8]], total: Int, start: ContinuousClock.Instant,
                         interval: Double, results: Tally) async throws {
        let metadata: Metadata = token.map { ["authorization": "Bearer \($0)"] } ?? [:]
        try await withGRPCClient(transport: try .http2NIOPosix(target: .ipv4(address: host == "localhost" ? "127.0.0.1" : host, port: port),
                                                                transportSecurity: .plaintext)) { client in
            let scoring = Vigil_V1_Scoring.Client(wrapping: client)
            let clock = ContinuousClock()
            await withDiscardingTaskGroup { group in
                for i in 0..<total {
                    let due = start + .seconds(Double(i) * interval)
                    try? await clock.sleep(until: due)
                    var request = Vigil_V1_ScoreRequest()
                    request.transactionJson = Data(bodies[i])
                    group.addTask {
                        var status = 200
                        do {
                            _ = try await scoring.score(request, metadata: metadata)
                        } catch let error as RPCError {
                            status = error.code == .resourceExhausted ? 429 : 500
                        } catch {
                            status = 0
                        }
                        let latency = clock.now - due
                        results.state.withLock { $0.record(i, status: status, latency: latency) }
                    }
                }
            }
        }
    }

    func report(_ r: Results, warmup: Int, total: Int, start: ContinuousClock.Instant, interval: Double) throws {
        let measured = r.latencies[warmup...].compactMap { $0 }
        let sorted = measured.sorted()
        func p(_ q: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))].seconds * 1000 }
        let span = (r.lastCompletion - (start + .seconds(Double(warmup) * interval))).seconds
        let ok = r.statuses[warmup...].filter { $0 == 200 }.count
        let refused = r.statuses[warmup...].filter { $0 == 429 }.count
        let failed = r.statuses[warmup...].filter { $0 != 200 && $0 != 429 }.count
        let achieved = Double(ok) / max(span, 1e-9)
        print(String(format: "\(grpc == nil ? "HTTP" : "gRPC") %.0f req/s target: %.0f scored/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; %d refused (429), %d failed",
                     rate, achieved, p(0.5), p(0.99), p(0.999), p(1), refused, failed))
        if let summaryJSON {
            var w = JSONWriter()
            w.object { w in
                w.field("target_rate", rate)
                w.field("achieved_rate", achieved)
                w.field("requests", total - warmup)
                w.field("ok", ok)
                w.field("refused", refused)
                w.field("failed", failed)
                w.field("p50_ms", p(0.5))
                w.field("p99_ms", p(0.99))
                w.field("p999_ms", p(0.999))
                w.field("max_ms", p(1))
            }
            try Data(w.bytes).write(to: URL(fileURLWithPath: summaryJSON))
        }
    }

    /// The results, shared by the threads or tasks that send.
    final class Tally: Sendable {
        let state: Mutex<Results>
        init(count: Int) { state = Mutex(Results(count: count)) }
    }

    struct Results {
        var statuses: [Int]
        var latencies: [Duration?]
        var finished = 0
        var lastCompletion = ContinuousClock.now
        init(count: Int) {
            statuses = [Int](repeating: 0, count: count)
            latencies = [Duration?](repeating: nil, count: count)
        }
        mutating func record(_ i: Int, status: Int, latency: Duration) {
            statuses[i] = status
            latencies[i] = latency
            finished += 1
            lastCompletion = .now
        }
    }
}

/// A blocking HTTP/1.1 keep-alive connection: enough client for a load generator.
final class HTTPConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(host: String, port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(host == "localhost" ? "127.0.0.1" : host)
        addr.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            close(fd)
            throw ValidationError("cannot connect to \(host):\(port)")
        }
    }

    deinit { close(fd) }

    /// Sends a POST and reads the whole response; its status.
    func post(_ path: String, body: [UInt8], token: String?) throws -> Int {
        var head = "POST \(path) HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        head += "\r\n"
        let request = Array(head.utf8) + body
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ValidationError("send failed") }
            sent += n
        }
        // Header block, then Content-Length bytes of body.
        var headerEnd: Int?
        while true {
            if let end = headerEnd ?? find([13, 10, 13, 10]) {
                headerEnd = end
                let header = String(decoding: buffer[..<end], as: UTF8.self)
                let status = header.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
                var length = 0
                for line in header.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
                if buffer.count >= end + 4 + length {
                    buffer.removeFirst(end + 4 + length)
                    return status
                }
            }
            var chunk = [UInt8](repeating: 0, count: 16384)
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw ValidationError("connection closed") }
            buffer += chunk[0..<n]
        }
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        for i in 0...(buffer.count - pattern.count) where buffer[i] == pattern[0] && Array(buffer[i..<(i + pattern.count)]) == pattern {
            return i
        }
        return nil
    }
}
