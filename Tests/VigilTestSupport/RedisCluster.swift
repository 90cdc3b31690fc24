import Foundation
import Glibc

/// A real three-master Redis Cluster of `redis-server` processes on loopback, created with
/// `redis-cli --cluster create` for the tests and stopped after.
public final class RedisClusterFixture: @unchecked Sendable {
    public let servers: [RedisServer]
    public var ports: [Int] { servers.map(\.port) }

    public init(masters: Int = 3) throws {
        var servers: [RedisServer] = []
        for _ in 0..<masters {
            let port = RedisServer.freePort()
            // Cluster bus port is port + 10000: keep it in range.
            servers.append(try RedisServer(extra: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(port).conf",
                                                   "--cluster-node-timeout", "2000"], port: port > 55000 ? port - 10000 : port))
        }
        self.servers = servers
        let create = try RedisClusterFixture.cli(["--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "0", "--cluster-yes"])
        guard create.status == 0 else { throw TestFailure("redis-cli --cluster create failed: \(create.output)") }
        let ok = try eventually(timeout: .seconds(30), every: .milliseconds(100)) {
            try servers.allSatisfy { try RedisClusterFixture.cli(["-p", String($0.port), "CLUSTER", "INFO"]).output.contains("cluster_state:ok") }
        }
        guard ok else { throw TestFailure("cluster did not reach cluster_state:ok") }
    }

    public var seedURL: String { "redis+cluster://127.0.0.1:\(servers[0].port)" }

    public func nodeID(_ i: Int) throws -> String {
        try RedisClusterFixture.cli(["-p", String(servers[i].port), "CLUSTER", "MYID"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Moves `slots` slots from node `from` to node `to` with `redis-cli --cluster reshard`
    /// (MIGRATING/IMPORTING, MIGRATE of each key, SETSLOT NODE), as an operator would.
    public func reshard(from: Int, to: Int, slots: Int) throws -> ChildProcess {
        try ChildProcess("/usr/bin/redis-cli", ["--cluster", "reshard", "127.0.0.1:\(servers[0].port)",
                                                "--cluster-from", try nodeID(from), "--cluster-to", try nodeID(to),
                                                "--cluster-slots", String(slots), "--cluster-yes", "--cluster-pipeline", "10"],
                         name: "reshard")
    }

    @discardableResult
    public static func cli(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = try ChildProcess("/usr/bin/redis-cli", args, name: "redis-cli")
        guard let status = p.wait(timeout: .seconds(60)) else { p.kill(); throw TestFailure("redis-cli \(args) timed out") }
        return (status, p.output + p.errorOutput)
    }
}
