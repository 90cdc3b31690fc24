import Foundation
import VigilFeatures

/// What the store sends its pipelines through: one Redis, or a Redis Cluster.
protocol RedisTransport: AnyObject {
    /// Runs `commands` and returns their replies in the same order. Redis error replies are
    /// returned, not thrown; I/O problems throw.
    func pipeline(_ commands: RedisPipeline) throws(StoreError) -> [RedisReply]
    func disconnect()
}

extension RedisTransport {
    /// ``pipeline(_:)`` for commands given as arguments (setup, administration, tests).
    func pipeline(_ commands: [[[UInt8]]]) throws(StoreError) -> [RedisReply] { try pipeline(RedisPipeline(commands)) }
}

extension RedisConnection: RedisTransport {}

/// Redis Cluster routing for hiredis, which has none: hash slots (CRC16 of the key's hash tag),
/// a slot map from `CLUSTER SLOTS`, one connection and one pipeline per node with every node's
/// requests in flight at once, `MOVED` (refresh the map, resend) and `ASK` (`ASKING` + resend to
/// the importing node, map unchanged).
///
/// Every key Vigil writes is hash-tagged per entity (`{E:H}`) or per transaction, and every
/// command touches one key (its second argument), so no command ever spans slots.
final class RedisClusterClient: RedisTransport {
    let configuration: RedisConfiguration
    /// Slot → index into `nodes`; -1 where unknown.
    private(set) var slots = [Int](repeating: -1, count: 16384)
    private(set) var nodes: [(host: String, port: Int)] = []
    private var connections: [String: RedisConnection] = [:]
    /// Times the slot map was (re)read: once at start, then after each MOVED.
    private(set) var refreshes = 0
    private(set) var redirects = (moved: 0, ask: 0)

    init(configuration: RedisConfiguration) { self.configuration = configuration }

    func disconnect() {
        for c in connections.values { c.disconnect() }
        connections = [:]
    }

    private func connection(_ host: String, _ port: Int) -> RedisConnection {
        let name = "\(host):\(port)"
        if let c = connections[name] { return c }
        var c = configuration
        c.url.endpoint = .tcp(host: host, port: port)
        c.url.cluster = false
        let conn = RedisConnection(configuration: c)
        connections[name] = conn
        return conn
    }

    /// Reads the slot map from the first node that answers (known nodes first, then the seed).
    func refresh() throws(StoreError) {
        var candidates = nodes
        if case .tcp(let host, let port) = configuration.url.endpoint { candidates.append((host, port)) }
        var lastError = StoreError(.unavailable, "no Redis Cluster node to ask for the slot map")
        for (host, port) in candidates {
            do {
                let reply = try connection(host, port).pipeline([["CLUSTER", "SLOTS"].bytes])[0]
                try apply(slotMap: reply)
                refreshes += 1
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private func apply(slotMap reply: RedisReply) throws(StoreError) {
        guard case .array(let ranges) = reply, !ranges.isEmpty else {
            throw StoreError(.protocolError, "CLUSTER SLOTS: \(reply.errorMessage ?? "empty map") (is this a cluster node?)")
        }
        var newSlots = [Int](repeating: -1, count: 16384)
        var newNodes: [(host: String, port: Int)] = []
        for case .array(let r) in ranges {
            guard r.count >= 3, case .integer(let from) = r[0], case .integer(let to) = r[1], case .array(let master) = r[2],
                  master.count >= 2, case .string(let hostBytes) = master[0], case .integer(let port) = master[1],
                  from >= 0, to < 16384, from <= to
            else { throw StoreError(.protocolError, "CLUSTER SLOTS: malformed range") }
            var host = String(decoding: hostBytes, as: UTF8.self)
            if host.isEmpty, case .tcp(let seed, _) = configuration.url.endpoint { host = seed }
            let index = newNodes.firstIndex { $0.host == host && $0.port == Int(port) } ?? {
                newNodes.append((host, Int(port)))
                return newNodes.count - 1
            }()
            for s in Int(from)...Int(to) { newSlots[s] = index }
        }
        slots = newSlots
        nodes = newNodes
    }

    /// Sends each command to its slot's node (all nodes' pipelines in flight together), then
    /// follows redirections. Replies come back in the commands' order.
    func pipeline(_ commands: RedisPipeline) throws(StoreError) -> [RedisReply] {
        do {
            return try route(commands)
        } catch {
            // Replies may be left unread on other nodes: start clean, and reread the map (a
            // failover may have promoted another node).
            disconnect()
            nodes = []
            throw error
        }
    }

    private func route(_ commands: RedisPipeline) throws(StoreError) -> [RedisReply] {
        if nodes.isEmpty { try refresh() }
        var replies = [RedisReply](repeating: .null, count: commands.count)
        var pending = Array(0..<commands.count)
        for attempt in 0..<5 {
            var byNode: [Int: [Int]] = [:]
            for i in pending {
                let slot = Self.slot(of: commands.key(i))
                guard slots[slot] >= 0 else { throw StoreError(.unavailable, "slot \(slot) is not served by any node") }
                byNode[slots[slot], default: []].append(i)
            }
            let order = byNode.keys.sorted()
            for n in order {
                var part = RedisPipeline()
                for i in byNode[n]! { part.append(command: i, of: commands) }
                try connection(nodes[n].host, nodes[n].port).send(part)
            }
            var moved: [Int] = []
            var ask: [(index: Int, host: String, port: Int)] = []
            for n in order {
                let indices = byNode[n]!
                let got = try connection(nodes[n].host, nodes[n].port).receive(indices.count)
                for (i, r) in zip(indices, got) {
                    if let e = r.errorMessage, let target = Self.redirect(e) {
                        if target.ask { ask.append((i, target.host, target.port)) } else { moved.append(i) }
                    } else {
                        replies[i] = r
                    }
                }
            }
            // ASK: this command only, to the importing node, preceded by ASKING.
            for a in ask {
                redirects.ask += 1
                var asking = RedisPipeline([["ASKING"].bytes])
                asking.append(command: a.index, of: commands)
                let got = try connection(a.host, a.port).pipeline(asking)
                if let e = got[1].errorMessage, Self.redirect(e) != nil { moved.append(a.index) } else { replies[a.index] = got[1] }
            }
            guard !moved.isEmpty else { return replies }
            redirects.moved += moved.count
            // The slot moved for good: reread the map, resend in the original order.
            try refresh()
            pending = moved.sorted()
            _ = attempt
        }
        throw StoreError(.unavailable, "Redis Cluster kept redirecting (resharding in progress?)")
    }

    /// `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`.
    static func redirect(_ error: String) -> (ask: Bool, host: String, port: Int)? {
        let parts = error.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED" || parts[0] == "ASK", let colon = parts[2].lastIndex(of: ":"),
              let port = Int(parts[2][parts[2].index(after: colon)...])
        else { return nil }
        return (parts[0] == "ASK", String(parts[2][..<colon]), port)
    }

    /// The key's hash slot: CRC16 (XMODEM) of the hash tag — the part between the first `{` and
    /// the next `}`, if non-empty — or of the whole key, modulo 16384.
    static func slot(of key: [UInt8]) -> Int { slot(of: key[...]) }

    static func slot(of key: ArraySlice<UInt8>) -> Int {
        var part = key
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            part = key[(open + 1)..<close]
        }
        return Int(crc16(part) & 0x3FFF)
    }

    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for b in bytes {
            crc ^= UInt16(b) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }
}
