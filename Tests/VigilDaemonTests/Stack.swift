import Foundation
import Glibc
import Vigil
import VigilFeatures
import VigilKafka
import VigilRedis
import VigilSimulator
import VigilTestSupport

/// A dev broker (its own process), optionally a real Redis, and `vigild` processes: the
/// daemon exactly as it is deployed, driven over Kafka and its admin port.
final class Stack: @unchecked Sendable {
    let directory: String
    let broker: ChildProcess
    let bootstrap: String
    var redis: RedisServer?
    static let hashSecret = "test-hash-secret-0123456789abcdef"
    static let adminToken = "test-admin-token"
    static let apiToken = "test-api-token"

    init(redis withRedis: Bool = false, partitions: Int = 4) throws {
        directory = NSTemporaryDirectory() + "vigil-e2e-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        broker = try ChildProcess(BuiltProduct.path("vigil"), ["dev-broker", "--partitions", String(partitions)], directory: directory, name: "broker")
        bootstrap = try broker.firstLine()
        if withRedis { redis = try RedisServer() }
    }

    deinit {
        broker.kill()
    }

    /// A running `vigild` with its admin port.
    final class Daemon: @unchecked Sendable {
        let process: ChildProcess
        let adminPort: Int
        init(process: ChildProcess, adminPort: Int) {
            self.process = process
            self.adminPort = adminPort
        }

        var log: String { process.errorOutput }

        func waitReady(timeout: Duration = .seconds(40)) throws {
            let ok = try eventually(timeout: timeout, every: .milliseconds(100)) {
                guard process.isRunning else { throw TestFailure("vigild exited: \(log.suffix(2000))") }
                return (try? HTTP.request(port: adminPort, "GET", "/ready").status) == 200
            }
            if !ok { throw TestFailure("vigild not ready: \(log.suffix(2000))") }
        }

        func metric(_ name: String) throws -> Double {
            let body = try HTTP.request(port: adminPort, "GET", "/metrics").body
            return body.split(separator: "\n").filter { $0.hasPrefix(name + " ") }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.first ?? 0
        }
    }

    /// Starts `vigild` against this stack. `config` is written to a file when given; `configFile`
    /// is used as it is (a test that edits it and reloads).
    func startDaemon(group: String = "vigil", config: String? = nil, configFile: String? = nil, extra: [String] = []) throws -> Daemon {
        let port = RedisServer.freePort()
        var args = ["--brokers", bootstrap, "--group", group, "--admin-port", String(port),
                    "--redis", redis?.url ?? "memory", "--log-format", "json",
                    // The mock cluster holds a member's partitions for the session timeout after it dies.
                    "--property", "session.timeout.ms=6000", "--property", "heartbeat.interval.ms=500"]
        if let configFile {
            args += ["--config", configFile]
        } else if let config {
            let path = directory + "/vigil-\(UUID().uuidString.prefix(6)).yaml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            args += ["--config", path]
        } else {
            args += ["--model", BuiltProduct.packageRoot + "/models/default", "--rules", BuiltProduct.packageRoot + "/rules/default.yaml"]
        }
        let p = try ChildProcess(BuiltProduct.path("vigild"), args + extra,
                                 environment: ["VIGIL_HASH_SECRET": Stack.hashSecret, "VIGIL_ADMIN_TOKEN": Stack.adminToken, "VIGIL_API_TOKEN": Stack.apiToken],
                                 directory: directory, name: "vigild")
        return Daemon(process: p, adminPort: port)
    }

    /// Keys in the stack's Redis matching `pattern` (SCAN through redis-cli).
    func redisKeys(_ pattern: String) throws -> [String] {
        guard let redis else { return [] }
        let p = try ChildProcess("/usr/bin/redis-cli", ["-p", String(redis.port), "--scan", "--pattern", pattern], directory: directory, name: "redis-cli")
        guard p.wait(timeout: .seconds(30)) == 0 else { throw TestFailure("redis-cli failed: \(p.errorOutput)") }
        return p.output.split(separator: "\n").map(String.init)
    }

    /// The entities whose log keys (`vigil:x:{E:H}:epoch`) match `pattern`, once each, as `vigil:x:{E:H}`.
    func entityLogs(_ pattern: String) throws -> [String] {
        Set(try redisKeys(pattern).compactMap { key in key.firstIndex(of: "}").map { String(key[...$0]) } }).sorted()
    }

    /// The distinct events and fraud labels in the entity logs matching `pattern` (default feature spec).
    func streamContents(_ pattern: String) throws -> (events: Int, fraud: Int) {
        guard let redis else { return (0, 0) }
        let store = RedisVelocityStore(plan: try FeaturePlan(spec: .default), configuration: try RedisConfiguration.forTests(redis.url))
        var events = 0, fraud = 0
        for key in try entityLogs(pattern) {
            let c = try store.streamContents(key)
            events += c.events.count
            fraud += c.fraud.count
        }
        return (events, fraud)
    }

    var properties: KafkaProperties { ["bootstrap.servers": bootstrap] }

    /// Publishes messages (keyed by card id for transactions), optionally paced.
    func publish(_ messages: [OutgoingMessage], rate: Double? = nil) throws {
        let producer = try KafkaProducer(properties: properties)
        let clock = ContinuousClock()
        let start = clock.now
        for (i, m) in messages.enumerated() {
            if let rate {
                let due = start + .nanoseconds(Int64(Double(i) / rate * 1e9))
                while clock.now < due { _ = producer.poll(timeout: .milliseconds(1)) }
            }
            try producer.send(m, token: UInt64(i + 1))
        }
        guard producer.flush(timeout: .seconds(30)) else { throw TestFailure("publish not acknowledged") }
    }

    /// `days` of simulated history ending now. Sent in seconds, it compresses event time: keep it
    /// short where redeliveries happen, so that they stay within the store's allowed lateness
    /// (24 h of event time), as they do in production.
    static func transactions(_ n: Int, seed: UInt64 = 11, days: Int = 10) -> [Transaction] {
        var o = Simulator.Options(transactions: n, days: days, seed: seed)
        o.start = Int64(Date().timeIntervalSince1970 * 1000) - Int64(days) * 86_400_000
        return Simulator(options: o).generate()
    }

    static func message(_ tx: Transaction, topic: String = "transactions") -> OutgoingMessage {
        OutgoingMessage(topic: topic, key: tx.cardID.map { Array($0.utf8) }, value: Array(Simulator.json(tx).utf8))
    }

    /// Reads `topic` from the start until `count` messages with distinct keys arrived (or
    /// `timeout`), then whatever else is already there: a verdict sent again after a crash is one
    /// more message, not one more transaction. `distinctKeys: false` counts every message.
    func read(_ topic: String, count: Int, distinctKeys: Bool = true, timeout: Duration = .seconds(60)) throws -> [KafkaMessage] {
        var p = properties
        p["group.id"] = "reader-\(UUID().uuidString.prefix(8))"
        let consumer = try KafkaConsumer(properties: p, topics: [topic])
        defer { consumer.close() }
        var out: [KafkaMessage] = []
        var keys = Set<ArraySlice<UInt8>>()
        var unkeyed = 0
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while keys.count + unkeyed < count, clock.now < deadline {
            for m in consumer.poll(max: 1000, timeout: .milliseconds(100)) {
                out.append(m)
                if distinctKeys, let key = m.key { keys.insert(key) } else { unkeyed += 1 }
            }
        }
        // Anything more (duplicates) that is already there.
        let settle = clock.now + .seconds(1)
        while clock.now < settle { out += consumer.poll(max: 1000, timeout: .milliseconds(100)) }
        return out
    }
}

/// Verdicts by transaction id, with what makes a duplicate acceptable.
struct VerdictSet {
    var byID: [String: [String]] = [:]

    init(_ messages: [KafkaMessage]) {
        for m in messages { byID[String(decoding: m.key ?? [], as: UTF8.self), default: []].append(String(decoding: m.value, as: UTF8.self)) }
    }

    /// The verdict without its latency (the one field allowed to differ on redelivery).
    static func decision(_ json: String) -> Substring {
        json[..<(json.range(of: ",\"latency_us\"")?.lowerBound ?? json.endIndex)]
    }

    var duplicates: Int { byID.values.reduce(0) { $0 + $1.count - 1 } }
    var differing: Int { byID.values.filter { Set($0.map(Self.decision)).count > 1 }.count }
    /// Two different verdicts of one transaction, if there are any.
    var firstDiffering: [String]? {
        byID.values.first { Set($0.map(Self.decision)).count > 1 }.map { v in [v[0], v.first { Self.decision($0) != Self.decision(v[0]) }!] }
    }
    func missing(_ ids: [String]) -> [String] { ids.filter { byID[$0] == nil } }
}

/// A tiny HTTP/1.0 client for the admin port (loopback only).
enum HTTP {
    static func request(port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []) throws -> (status: Int, body: String) {
        let r = try exchange(port: port, method, path, headers: headers, body: body)
        return (r.status, r.body)
    }

    /// One request on its own connection; the response's status, header block and body.
    static func exchange(port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []) throws -> (status: Int, head: String, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw TestFailure("connect \(port)") }
        var text = "\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        text += "\r\n"
        let bytes = Array(text.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Until the server closes, or the body is complete (a server may keep the connection).
        while !complete(response) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let s = String(decoding: response, as: UTF8.self)
        let status = s.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
        let split = s.range(of: "\r\n\r\n")
        return (status, split.map { String(s[..<$0.lowerBound]) } ?? s, split.map { String(s[$0.upperBound...]) } ?? "")
    }

    /// Whether `response` holds its header block and `Content-Length` bytes of body.
    static func complete(_ response: [UInt8]) -> Bool {
        let s = String(decoding: response, as: UTF8.self)
        guard let end = s.range(of: "\r\n\r\n") else { return false }
        let head = s[..<end.lowerBound].lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else { return false }
        return s[end.upperBound...].utf8.count >= length
    }
}
