import Foundation
import Glibc

/// A real `redis-server` on a free loopback port, started for the tests and stopped after.
final class RedisServer: @unchecked Sendable {
    let port: Int
    private(set) var pid: pid_t = 0
    let directory: String

    /// - Parameter extra: more `redis-server` arguments (e.g. `--requirepass`).
    init(extra: [String] = [], port fixed: Int? = nil) throws {
        port = fixed ?? RedisServer.freePort()
        directory = NSTemporaryDirectory() + "vigil-redis-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pid = try RedisServer.spawn(["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", directory, "--logfile", directory + "/redis.log"] + extra)
        try waitUntilReady()
    }

    /// Starts redis-server with posix_spawn (Foundation's Process can hang in waitUntilExit
    /// on a test's cooperative thread).
    static func spawn(_ arguments: [String]) throws -> pid_t {
        let argv = ([executable()] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        // The test runner's threads block signals; the server must not inherit that mask, or it
        // would ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let rc = posix_spawn(&pid, executable(), nil, &attributes, argv, environ)
        guard rc == 0 else { throw NSError(domain: "RedisServer", code: Int(rc), userInfo: [NSLocalizedDescriptionKey: "posix_spawn failed"]) }
        return pid
    }

    /// Stops a spawned server and reaps it.
    static func kill(_ pid: pid_t, signal: Int32 = SIGKILL) {
        guard pid > 0 else { return }
        Glibc.kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    static func executable() -> String {
        for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/usr/bin/redis-server"
    }

    static func freePort() -> Int {
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

    func waitUntilReady() throws {
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

    var url: String { "redis://127.0.0.1:\(port)/0" }

    func stop() {
        RedisServer.kill(pid, signal: SIGTERM)
        pid = 0
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
