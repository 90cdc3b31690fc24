import Foundation
import Glibc

/// A child process for integration tests: spawned with a clean signal mask, output to files.
///
/// Foundation's `Process` can hang in `waitUntilExit` on a test's cooperative thread, and the
/// test runner's threads block signals that a child must not inherit (or it would ignore SIGTERM).
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let stdoutPath: String
    public let stderrPath: String
    private var reaped = false
    private var exitStatus: Int32 = 0

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil, name: String? = nil) throws {
        let dir = directory ?? NSTemporaryDirectory()
        let base = dir + "/" + (name ?? URL(fileURLWithPath: executable).lastPathComponent) + "-\(UUID().uuidString.prefix(8))"
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        pid = try ChildProcess.spawn(executable, arguments, environment: environment, stdout: stdoutPath, stderr: stderrPath)
    }

    public static func spawn(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                             stdout: String? = nil, stderr: String? = nil) throws -> pid_t {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let stdout { posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        if let stderr { posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Sends `signal` (default SIGTERM).
    public func signal(_ signal: Int32 = SIGTERM) {
        if !reaped { Glibc.kill(pid, signal) }
    }

    /// Waits for the process to exit, up to `timeout`; returns its wait status, or nil on timeout.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30)) -> Int32? {
        if reaped { return exitStatus }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                reaped = true
                exitStatus = status
                return status
            }
            usleep(10_000)
        }
        return nil
    }

    public var isRunning: Bool {
        guard !reaped else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            reaped = true
            exitStatus = status
            return false
        }
        return true
    }

    /// SIGKILL and reap.
    public func kill() {
        signal(SIGKILL)
        wait(timeout: .seconds(10))
    }

    public var output: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var errorOutput: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits until the process has written a first line to standard output, and returns it.
    public func firstLine(timeout: Duration = .seconds(15)) throws -> String {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let line = output.split(separator: "\n").first { return String(line) }
            guard isRunning else { throw TestFailure("process exited before printing: \(errorOutput)") }
            usleep(20_000)
        }
        throw TestFailure("no output within \(timeout)")
    }

    deinit {
        if !reaped {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The package's own built executables (`vigil`, `vigild`), next to the test binary.
public enum BuiltProduct {
    public static func path(_ name: String) -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The test bundle may sit inside `X.xctest/` on some layouts.
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return name
    }

    /// The repository root (for `models/`, `rules/`).
    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

/// Waits until `condition` holds, polling, up to `timeout`.
public func eventually(timeout: Duration = .seconds(30), every: Duration = .milliseconds(50), _ condition: () throws -> Bool) throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: Double(every.components.attoseconds) / 1e18 + Double(every.components.seconds))
    }
    return try condition()
}
