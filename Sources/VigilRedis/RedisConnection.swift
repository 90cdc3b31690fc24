import CHiredis
import Foundation
import VigilFeatures

/// Where Redis is: `redis://[user:password@]host[:port][/db]` or `unix:///path/to/socket[?db=N]`.
///
/// - Important: The password is never logged; ``description`` masks it. Prefer a password from
///   the environment or a file (see `docs/redis.md`).
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    public enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }
    public var endpoint: Endpoint
    public var user: String?
    public var password: String?
    public var database: Int
    /// `redis+cluster://`: the endpoint is a seed node of a Redis Cluster; commands are routed
    /// by hash slot (``RedisClusterClient``).
    public var cluster: Bool = false

    public init(endpoint: Endpoint, user: String? = nil, password: String? = nil, database: Int = 0, cluster: Bool = false) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.cluster = cluster
    }

    public init(_ text: String) throws(StoreError) {
        guard let url = URLComponents(string: text), let scheme = url.scheme else {
            throw StoreError(.protocolError, "not a Redis URL (redis://host:port/db or unix:///path)")
        }
        user = url.user.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding }
        password = url.password?.removingPercentEncoding
        switch scheme {
        case "redis", "redis+cluster":
            cluster = scheme == "redis+cluster"
            guard let host = url.host, !host.isEmpty else { throw StoreError(.protocolError, "Redis URL has no host") }
            endpoint = .tcp(host: host, port: url.port ?? 6379)
            let path = url.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            guard let db = path.isEmpty ? 0 : Int(path), db >= 0 else { throw StoreError(.protocolError, "Redis URL database must be a number") }
            guard !cluster || db == 0 else { throw StoreError(.protocolError, "Redis Cluster has only database 0") }
            database = db
        case "unix":
            guard !url.path.isEmpty else { throw StoreError(.protocolError, "unix:// URL has no socket path") }
            endpoint = .unix(path: url.path)
            database = url.queryItems?.first { $0.name == "db" }?.value.flatMap(Int.init) ?? 0
        default:
            throw StoreError(.protocolError, "unsupported scheme '\(scheme)' (redis, redis+cluster or unix)")
        }
    }

    public var description: String {
        let auth = user.map { "\($0):***@" } ?? (password != nil ? ":***@" : "")
        switch endpoint {
        case .tcp(let host, let port): return cluster ? "redis+cluster://\(auth)\(host):\(port)" : "redis://\(auth)\(host):\(port)/\(database)"
        case .unix(let path): return "unix://\(auth)\(path)?db=\(database)"
        }
    }
}

/// A reply, copied out of hiredis's reply tree.
public enum RedisReply: Sendable, Hashable {
    case string([UInt8])
    case integer(Int64)
    case array([RedisReply])
    case null
    case status(String)
    case error(String)

    public var errorMessage: String? {
        if case .error(let m) = self { return m }
        return nil
    }

    init(_ r: UnsafePointer<redisReply>) {
        switch r.pointee.type {
        case REDIS_REPLY_STRING:
            self = .string(Array(UnsafeRawBufferPointer(start: r.pointee.str, count: r.pointee.len)))
        case REDIS_REPLY_INTEGER: self = .integer(r.pointee.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(r.pointee.elements)
            for i in 0..<r.pointee.elements {
                if let e = r.pointee.element[i] { items.append(RedisReply(e)) } else { items.append(.null) }
            }
            self = .array(items)
        case REDIS_REPLY_STATUS: self = .status(String(decoding: UnsafeRawBufferPointer(start: r.pointee.str, count: r.pointee.len), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(String(decoding: UnsafeRawBufferPointer(start: r.pointee.str, count: r.pointee.len), as: UTF8.self))
        default: self = .null
        }
    }
}

/// Connection settings. Defaults suit a Redis on the same network.
public struct RedisConfiguration: Sendable {
    public var url: RedisURL
    /// Default: 200 ms.
    public var connectTimeout: Duration = .milliseconds(200)
    /// Per round trip. Default: 50 ms — past it the batch degrades rather than waits.
    public var readTimeout: Duration = .milliseconds(50)
    /// Consecutive failures that open the circuit breaker. Default: 3.
    public var breakerThreshold: Int = 3
    /// How long the breaker stays open before one trial request; doubles on each failed trial up
    /// to ``breakerMaxCooldown``. Default: 500 ms.
    public var breakerCooldown: Duration = .milliseconds(500)
    /// Default: 10 s.
    public var breakerMaxCooldown: Duration = .seconds(10)
    /// Key prefix (namespace). Default: `vigil`.
    public var prefix: String = "vigil"
    /// Memory for this process's cache of entity windows (events and window state of the entities
    /// it has seen lately, least recently used evicted first). A cached entity costs one small
    /// write per batch; an evicted or never-seen one one bounded read. Default: 1 GiB.
    public var cacheBytes: Int = 1 << 30
    /// A log is compacted once its frames wholly past the retention hold this many bytes and
    /// half as many as the rest. Default: 4 KiB (tests lower it to compact often).
    public var compactionBytes: Int = 4096
    /// A cached entity not used for this long may be behind a compaction whose sealed log has
    /// expired since (an hour after it): its next append reads the epoch pointer too. At most
    /// an hour. Default: 30 minutes.
    public var staleAfter: Duration = .seconds(1800) {
        didSet { staleAfter = min(staleAfter, .seconds(3600)) }
    }
    /// Bytes read per `GETRANGE`: a long log (a cold busy merchant) comes in pieces of this
    /// size, one round trip each, so that no single reply runs into the read timeout.
    /// Default: 256 KiB.
    public var readChunkBytes: Int = 256 << 10

    public init(url: RedisURL) { self.url = url }
}

/// One hiredis connection, owned: freed in `deinit`, re-established after an I/O error.
///
/// Not thread-safe on its own; ``RedisVelocityStore`` serialises use.
final class RedisConnection {
    private var context: UnsafeMutablePointer<redisContext>?
    let configuration: RedisConfiguration

    init(configuration: RedisConfiguration) { self.configuration = configuration }

    deinit { if let context { redisFree(context) } }

    static func timeval(_ d: Duration) -> timeval {
        let us = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
        return Glibc.timeval(tv_sec: Int(us / 1_000_000), tv_usec: Int(us % 1_000_000))
    }

    func disconnect() {
        if let context { redisFree(context) }
        context = nil
    }

    private func connect() throws(StoreError) -> UnsafeMutablePointer<redisContext> {
        if let context { return context }
        let c: UnsafeMutablePointer<redisContext>?
        switch configuration.url.endpoint {
        case .tcp(let host, let port): c = redisConnectWithTimeout(host, Int32(port), Self.timeval(configuration.connectTimeout))
        case .unix(let path): c = redisConnectUnixWithTimeout(path, Self.timeval(configuration.connectTimeout))
        }
        guard let c else { throw StoreError(.unavailable, "cannot allocate a Redis context") }
        if c.pointee.err != 0 {
            let message = Self.errorString(c)
            redisFree(c)
            throw StoreError(.unavailable, "connect \(configuration.url): \(message)")
        }
        redisSetTimeout(c, Self.timeval(configuration.readTimeout))
        redisEnableKeepAlive(c)
        context = c
        // AUTH (ACL user or default user) and SELECT, before anything else.
        var setup: [[[UInt8]]] = []
        if let password = configuration.url.password {
            setup.append(["AUTH"].bytes + (configuration.url.user.map { [Array($0.utf8)] } ?? []) + [Array(password.utf8)])
        }
        if configuration.url.database != 0 { setup.append(["SELECT", String(configuration.url.database)].bytes) }
        if !setup.isEmpty {
            let replies = try pipeline(setup)
            if let e = replies.compactMap(\.errorMessage).first {
                disconnect()
                // The server's message, never the password.
                throw StoreError(.unavailable, "Redis refused AUTH/SELECT: \(e)")
            }
        }
        return c
    }

    static func errorString(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Sends every command, then reads every reply: one round trip.
    /// - Throws: ``StoreError`` `.timeout` or `.unavailable` on an I/O error (the connection is
    ///   dropped and re-established on the next call). Redis error replies are returned, not thrown.
    func pipeline(_ commands: RedisPipeline) throws(StoreError) -> [RedisReply] {
        try send(commands)
        return try receive(commands.count)
    }

    /// Queues commands and writes them out without waiting for replies (so several connections
    /// can have requests in flight at once, as the cluster client does).
    func send(_ commands: RedisPipeline) throws(StoreError) {
        let c = try connect()
        // Already in RESP, handed to hiredis in one piece: no format parsing.
        let rc: Int32 = commands.bytes.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { redisAppendFormattedCommand(c, $0.baseAddress, $0.count) }
        }
        guard rc == 0 else {
            let message = Self.errorString(c)
            disconnect()
            throw StoreError(.unavailable, "append: \(message)")
        }
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(c, &done) == 0 else {
                let message = Self.errorString(c)
                disconnect()
                throw StoreError(.unavailable, "\(configuration.url): write: \(message)")
            }
        }
    }

    /// Reads `count` replies to what ``send(_:)`` wrote.
    func receive(_ count: Int) throws(StoreError) -> [RedisReply] {
        guard let c = context else { throw StoreError(.unavailable, "\(configuration.url): not connected") }
        var replies: [RedisReply] = []
        replies.reserveCapacity(count)
        for _ in 0..<count {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(c, &raw) == 0, let raw else {
                let message = Self.errorString(c)
                let timedOut = message.contains("temporarily unavailable") || message.contains("timed out") || message.contains("Timeout")
                disconnect()
                throw StoreError(timedOut ? .timeout : .unavailable, "\(configuration.url): \(message.isEmpty ? "connection lost" : message)")
            }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            replies.append(RedisReply(reply))
            freeReplyObject(raw)
        }
        return replies
    }

}

extension Array where Element == String {
    var bytes: [[UInt8]] { map { [UInt8]($0.utf8) } }
}
