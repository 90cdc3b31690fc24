import Foundation
import Glibc
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing
import Vigil
import VigilAPI
import VigilKafka
import VigilSimulator
import VigilTestSupport

/// The synchronous scoring API against a running `vigild`: the same scorer and store as the
/// Kafka path, checked against an in-process replay of the same stream.
@Suite(.serialized) struct APITests {
    static let auth = ["Authorization": "Bearer \(Stack.apiToken)", "Content-Type": "application/json"]

    /// Tags that reveal the card's 1 h count: `card_count_ge_N` for N = 1…8.
    static func countingRules(_ directory: String) throws -> String {
        var text = "version: \"api-test\"\nrules:\n"
        for n in 1...8 {
            text += "  - id: card_count_ge_\(n)\n    when: card_count_1h >= \(n)\n    action: tag\n    reason: count\n"
        }
        let path = directory + "/counting.yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func config(rules: String, httpPort: Int, extra: String = "") -> String {
        """
        store:
          timeout_ms: 2000
        scoring:
          deadline_ms: 60000
          model: \(BuiltProduct.packageRoot)/models/default
          rules: \(rules)
        api:
          http_port: \(httpPort)
        \(extra)
        """
    }

    static func card(_ i: Int, card: String, minutesAgo: Int, amount: Double = 20) -> Transaction {
        var t = Transaction(id: "api-\(card.suffix(2))-\(i)", timestamp: Int64(Date().timeIntervalSince1970 * 1000) - Int64(minutesAgo) * 60_000, amount: amount)
        t.cardID = card
        t.merchantID = "m-api"
        t.country = "FR"
        return t
    }

    static func post(_ port: Int, _ body: String, headers: [String: String] = auth) throws -> (status: Int, head: String, body: String) {
        try HTTP.exchange(port: port, "POST", "/v1/score", headers: headers, body: Array(body.utf8))
    }

    /// An in-process scorer with the daemon's model, rules and hash key, over an in-memory store.
    static func replayScorer(rules: String) throws -> Scorer {
        var c = ScorerConfiguration(modelDirectory: BuiltProduct.packageRoot + "/models/default", rulesPath: rules)
        c.hasher = try KeyedHasher(secret: Array(Stack.hashSecret.utf8))
        return try Scorer(configuration: c)
    }

    @Test("HTTP and Kafka share one store: each path sees the other's transactions, retries get the same verdict and count once")
    func httpAndKafkaShareTheWindows() throws {
        let stack = try Stack(redis: true)
        let rules = try Self.countingRules(stack.directory)
        let port = RedisServer.freePort()
        let daemon = try stack.startDaemon(config: Self.config(rules: rules, httpPort: port))
        try daemon.waitReady()
        let txs = (0..<6).map { Self.card($0, card: "4000001234567899", minutesAgo: 30 - $0) }
        let more = (6..<8).map { Self.card($0, card: "4000001234567899", minutesAgo: 30 - $0) }
        let replay = try Self.replayScorer(rules: rules)
        let expected = (txs + more).map { replay.score($0).json() }
        // Each counting rule shows as a reason and as a tag.
        func tags(_ json: String) -> Int { (json.components(separatedBy: "card_count_ge_").count - 1) / 2 }

        // 0, 1 by Kafka; 2 by HTTP; 3 by Kafka; 4 (and a retry of 2) by HTTP; 5 by Kafka.
        try stack.publish([Stack.message(txs[0]), Stack.message(txs[1])])
        _ = try stack.read("verdicts", count: 2)
        let second = try Self.post(port, Simulator.json(txs[2]))
        #expect(second.status == 200, "\(second.body)")
        #expect(VerdictSet.decision(second.body) == VerdictSet.decision(expected[2]), "HTTP sees the Kafka transactions")
        #expect(tags(second.body) == tags(expected[2]) && tags(expected[2]) >= 2)
        try stack.publish([Stack.message(txs[3])])
        _ = try stack.read("verdicts", count: 3)
        let retry = try Self.post(port, Simulator.json(txs[2]))
        #expect(VerdictSet.decision(retry.body) == VerdictSet.decision(second.body), "a retry gets the same verdict")
        let retryOfKafka = try Self.post(port, Simulator.json(txs[1]))
        #expect(VerdictSet.decision(retryOfKafka.body) == VerdictSet.decision(expected[1]), "a retry of a Kafka transaction gets its verdict")
        let fifth = try Self.post(port, Simulator.json(txs[4]))
        #expect(VerdictSet.decision(fifth.body) == VerdictSet.decision(expected[4]), "retries were not counted")
        #expect(tags(fifth.body) == tags(expected[4]) && tags(expected[4]) == tags(expected[2]) + 2)
        try stack.publish([Stack.message(txs[5])])
        let verdicts = VerdictSet(try stack.read("verdicts", count: 4))
        let kafkaLast = try #require(verdicts.byID[txs[5].id]?.first)
        #expect(VerdictSet.decision(kafkaLast) == VerdictSet.decision(expected[5]), "Kafka sees the HTTP transactions")
        #expect(verdicts.byID[txs[2].id] == nil, "synchronous verdicts are answered, not published")
        #expect(!second.body.contains("4000001234567899"), "no raw card number in a verdict")

        // A batch: verdicts and item errors, in order.
        let batch = "[\(Simulator.json(more[0])), {\"id\":\"bad\",\"timestamp\":\"yesterday\",\"amount\":1}, \(Simulator.json(more[1]))]"
        let answer = try Self.post(port, batch)
        #expect(answer.status == 200, "\(answer.body)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [[String: Any]])
        #expect(items.count == 3)
        #expect(items.first?["id"] as? String == more[0].id)
        #expect((items[1]["error"] as? [String: Any])?["field"] as? String == "timestamp")
        #expect(items[1]["index"] as? Int == 1)
        #expect(items.last?["id"] as? String == more[1].id)
        #expect(tags(answer.body) == tags(expected[6]) + tags(expected[7]))

        #expect(try daemon.metric("vigil_api_requests_total{endpoint=\"http\",outcome=\"ok\"}") == 5)
        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(timeout: .seconds(60)) == 0)
    }

    @Test("bad input gets 400 with the field and reason; a missing token 401; a body over the limit 413")
    func badInput() throws {
        let stack = try Stack()
        let port = RedisServer.freePort()
        let daemon = try stack.startDaemon(config: Self.config(rules: BuiltProduct.packageRoot + "/rules/default.yaml", httpPort: port,
                                                               extra: "  max_body_bytes: 4096"))
        try daemon.waitReady()
        let cases: [(String, String?)] = [
            ("{\"id\":\"t1\",\"timestamp\":\"2026-01-01T00:00:00Z\"", nil),  // malformed JSON
            ("{\"id\":\"t1\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"amount\":-5}", "amount"),
            ("{\"timestamp\":\"2026-01-01T00:00:00Z\",\"amount\":5}", "id"),
            ("[]", nil),
            ("", nil),
        ]
        for (body, field) in cases {
            let r = try Self.post(port, body)
            #expect(r.status == 400, "\(body): \(r.status) \(r.body)")
            let error = (try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any])?["error"] as? [String: Any]
            #expect(error?["code"] as? String == "invalid_argument", "\(r.body)")
            #expect((error?["reason"] as? String ?? "").count > 3)
            if let field { #expect(error?["field"] as? String == field, "\(r.body)") }
        }
        let valid = Simulator.json(Self.card(0, card: "4000000000000002", minutesAgo: 1))
        #expect(try Self.post(port, valid, headers: ["Content-Type": "application/json"]).status == 401)
        #expect(try Self.post(port, valid, headers: ["Authorization": "Bearer wrong"]).status == 401)
        #expect(try Self.post(port, "[" + Array(repeating: valid, count: 40).joined(separator: ",") + "]").status == 413)
        let budget = try Self.post(port, valid, headers: Self.auth.merging(["X-Vigil-Budget-Ms": "soon"]) { $1 })
        #expect(budget.status == 400 && budget.body.contains("X-Vigil-Budget-Ms"))
        #expect(try Self.post(port, valid).status == 200)
        #expect(!daemon.log.contains("4000000000000002"), "no raw card number in the log")
        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(timeout: .seconds(60)) == 0)
    }

    /// Sends `count` requests at once, each on its own thread; their answers in order.
    static func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) throws -> (status: Int, head: String, body: String)) -> [(status: Int, head: String, body: String)] {
        let results = LockedBox([(status: Int, head: String, body: String)?](repeating: nil, count: count))
        let threads = (0..<count).map { i in
            Thread {
                let r = (try? body(i)) ?? (0, "", "")
                results.update { $0[i] = r }
            }
        }
        threads.forEach { $0.start() }
        while results.value.contains(where: { $0 == nil }) { Thread.sleep(forTimeInterval: 0.01) }
        return results.value.map { $0! }
    }

    @Test("overload gets 429 with Retry-After; SIGTERM answers the requests in flight before exiting")
    func overloadAndDrain() throws {
        let stack = try Stack()
        let port = RedisServer.freePort()
        // Batches wait up to 2 s for company (250 ms after the last arrival) and at most 4
        // transactions wait: the rest is refused.
        let daemon = try stack.startDaemon(config: Self.config(rules: BuiltProduct.packageRoot + "/rules/default.yaml", httpPort: port,
                                                               extra: "  max_wait_us: 2000000\n  max_pending: 4"))
        try daemon.waitReady()
        let txs = (0..<12).map { Self.card($0, card: "40000000000000\(10 + $0)", minutesAgo: 5) }
        let answers = Self.concurrently(txs.count) { i in try Self.post(port, Simulator.json(txs[i])) }
        let refused = answers.filter { $0.status == 429 }
        #expect(answers.filter { $0.status == 200 }.count >= 1)
        #expect(refused.count >= txs.count - 4 - 4, "\(answers.map(\.status))")  // 4 wait, some may land in the next batch
        #expect(answers.allSatisfy { $0.status == 200 || $0.status == 429 }, "\(answers.map(\.status))")
        #expect(refused.allSatisfy { $0.head.lowercased().contains("retry-after: 1") && $0.body.contains("resource_exhausted") })
        #expect(try daemon.metric("vigil_api_requests_total{endpoint=\"http\",outcome=\"resource_exhausted\"}") == Double(refused.count))

        // Drain: requests waiting for their batch when SIGTERM arrives are still answered.
        let late = (0..<3).map { Self.card(100 + $0, card: "40000000000001\(10 + $0)", minutesAgo: 1) }
        let signal = Thread {
            Thread.sleep(forTimeInterval: 0.1)  // the requests are in, their batch not yet closed
            daemon.process.signal(SIGTERM)
        }
        signal.start()
        let drained = Self.concurrently(late.count) { i in try Self.post(port, Simulator.json(late[i])) }
        #expect(drained.allSatisfy { $0.status == 200 }, "\(drained.map { "\($0.status) \($0.body.prefix(80))" })")
        #expect(daemon.process.wait(timeout: .seconds(60)) == 0)
    }
}

/// A value shared between test threads.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    func update(_ body: (inout T) -> Void) { lock.withLock { body(&stored) } }
}

/// The same API over gRPC, with grpc-swift's own client.
@Suite(.serialized) struct GRPCAPITests {
    static func request(_ tx: Transaction, sequence: UInt64 = 0) -> Vigil_V1_ScoreRequest {
        var r = Vigil_V1_ScoreRequest()
        r.transactionJson = Data(Simulator.json(tx).utf8)
        r.sequence = sequence
        return r
    }

    static func withClient<T: Sendable>(_ port: Int, _ body: @Sendable (Vigil_V1_Scoring.Client<HTTP2ClientTransport.Posix>) async throws -> T) async throws -> T {
        try await withGRPCClient(transport: try .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)) { client in
            try await body(Vigil_V1_Scoring.Client(wrapping: client))
        }
    }

    /// No deadline: the client's tasks share this test process's cooperative pool with the
    /// synchronous tests that block on it, so a call may wait for a thread longer than any
    /// sensible deadline when the whole suite runs.
    static var authorized: CallOptions {
        var o = CallOptions.defaults
        o.timeout = nil
        return o
    }

    static let metadata: Metadata = ["authorization": "Bearer \(Stack.apiToken)"]

    @Test("gRPC: Score and ScoreStream answer like HTTP, share the windows, and refuse bad input and a missing token")
    func grpcScoring() async throws {
        let stack = try Stack()
        let rules = try APITests.countingRules(stack.directory)
        let httpPort = RedisServer.freePort(), grpcPort = RedisServer.freePort()
        let daemon = try stack.startDaemon(config: APITests.config(rules: rules, httpPort: httpPort, extra: "  grpc_port: \(grpcPort)"))
        try daemon.waitReady()
        let txs = (0..<6).map { APITests.card($0, card: "4000009876543210", minutesAgo: 40 - $0) }
        let replay = try APITests.replayScorer(rules: rules)
        let expected = txs.map { replay.score($0).json() }

        // 0 over HTTP, 1 over gRPC unary, 2 on a stream with a bad message, 3 and 4 unary, 5 over HTTP.
        #expect(try APITests.post(httpPort, Simulator.json(txs[0])).status == 200)
        let unary = try await Self.withClient(grpcPort) { client in
            try await client.score(Self.request(txs[1]), metadata: Self.metadata, options: Self.authorized)
        }
        #expect(unary.transactionID == txs[1].id)
        #expect(VerdictSet.decision(String(decoding: unary.json, as: UTF8.self)) == VerdictSet.decision(expected[1]))
        #expect(unary.action == (try #require(try JSONSerialization.jsonObject(with: Data(expected[1].utf8)) as? [String: Any]))["action"] as? String)

        let streamed = try await Self.withClient(grpcPort) { client in
            try await client.scoreStream(metadata: Self.metadata, options: Self.authorized, requestProducer: { writer in
                // In order, one at a time: the windows of each see the one before.
                try await writer.write(Self.request(txs[2], sequence: 2))
                var bad = Vigil_V1_ScoreRequest()
                bad.transactionJson = Data(#"{"id":"bad","timestamp":"2026-01-01T00:00:00Z","amount":"lots"}"#.utf8)
                bad.sequence = 99
                try await writer.write(bad)
            }, onResponse: { response in
                var out: [Vigil_V1_ScoreResponse] = []
                for try await m in response.messages { out.append(m) }
                return out
            })
        }
        #expect(Set(streamed.map(\.sequence)) == [2, 99])
        let good = try #require(streamed.first { $0.sequence == 2 }?.verdict)
        #expect(VerdictSet.decision(String(decoding: good.json, as: UTF8.self)) == VerdictSet.decision(expected[2]))
        let problem = try #require(streamed.first { $0.sequence == 99 }?.problem)
        #expect(problem.code == "invalid_argument" && problem.field == "amount", "\(problem)")

        for i in 3...4 {
            let v = try await Self.withClient(grpcPort) { client in
                try await client.score(Self.request(txs[i]), metadata: Self.metadata, options: Self.authorized)
            }
            #expect(VerdictSet.decision(String(decoding: v.json, as: UTF8.self)) == VerdictSet.decision(expected[i]))
        }
        let last = try APITests.post(httpPort, Simulator.json(txs[5]))
        #expect(VerdictSet.decision(last.body) == VerdictSet.decision(expected[5]), "HTTP sees the gRPC transactions")
        // A gRPC retry of an HTTP transaction: its verdict again, not counted twice.
        let retry = try await Self.withClient(grpcPort) { client in
            try await client.score(Self.request(txs[0]), metadata: Self.metadata, options: Self.authorized)
        }
        #expect(VerdictSet.decision(String(decoding: retry.json, as: UTF8.self)) == VerdictSet.decision(expected[0]))

        // Refusals keep their codes.
        await #expect { try await Self.withClient(grpcPort) { client in
            var bad = Vigil_V1_ScoreRequest()
            bad.transactionJson = Data("{".utf8)
            return try await client.score(bad, metadata: Self.metadata, options: Self.authorized)
        } } throws: { ($0 as? RPCError)?.code == .invalidArgument }
        await #expect { try await Self.withClient(grpcPort) { client in
            try await client.score(Self.request(txs[1]), options: Self.authorized)
        } } throws: { ($0 as? RPCError)?.code == .unauthenticated }
        #expect(try daemon.metric("vigil_api_requests_total{endpoint=\"grpc_unary\",outcome=\"ok\"}") == 4)
        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(timeout: .seconds(60)) == 0)
    }
}
