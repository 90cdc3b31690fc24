import Foundation
import Glibc

/// A real `redis-server` on a free loopback port, started for the tests and stopped after.
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    public private(set) var pid: pid_t = 0
    public let directory: String

    /// - Parameter extra: more `redis-server` arguments (e.g. `--requirepass`).
    public init(extra: [String] = [], port fixed: Int? = nil) throws {
        port = fixed ?? RedisServer.freePort()
        directory = NSTemporaryDirectory() + "vigil-redis-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pid = try RedisServer.spawn(["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", directory, "--logfile", directory + "/redis.log"] + extra)
        try waitUntilReady()
    }

    /// Starts redis-server (see ``ChildProcess/spawn(_:_:environment:stdout:stderr:)``).
    public static func spawn(_ arguments: [String]) throws -> pid_t {
        try ChildProcess.spawn(executable(), arguments)
    }

    /// Stops a spawned server and reaps it.
    public static func kill(_ pid: pid_t, signal: Int32 = SIGKILL) {
        guard pid > 0 else { return }
        Glibc.kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    public static func executable() -> String {
        for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/usr/bin/redis-server"
    }

    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public func waitUntilReady() throws {
        for _ in 0..<200 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if ok == 0 { return }
            usleep(20_000)
        }
        throw NSError(domain: "RedisServer", code: 1, userInfo: [NSLocalizedDescriptionKey: "redis-server did not start on \(port)"])
    }

    public var url: String { "redis://127.0.0.1:\(port)/0" }

    /// SIGKILL, no chance to save: what a crash looks like.
    public func crash() {
        RedisServer.kill(pid, signal: SIGKILL)
        pid = 0
    }

    public func stop() {
        RedisServer.kill(pid, signal: SIGTERM)
        pid = 0
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
