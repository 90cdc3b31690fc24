import Foundation
import Glibc
import Logging
import Testing
import Vigil
@testable import VigilDaemon
import VigilKafka
import VigilRedis
import VigilTestSupport

@Suite("Daemon configuration")
struct DaemonConfigurationTests {
    @Test("the shipped example file parses to exactly the documented defaults")
    func exampleIsDefaults() throws {
        let c = try DaemonConfiguration.load(path: BuiltProduct.packageRoot + "/config/vigil.yaml")
        #expect(c == DaemonConfiguration())
    }

    @Test("every option is read")
    func everyOption() throws {
        let c = try DaemonConfiguration.parse("""
            kafka:
              brokers: k1:9092,k2:9092
              group: fraud
              topics: { transactions: tx, verdicts: v, dead_letters: dlq, labels: lb }
              properties: { security.protocol: SASL_SSL, sasl.mechanism: PLAIN }
              batch_size: 64
              max_in_flight: 2
              pause_after_ms: 50
            store: { url: "redis://vigil@r:6379/2", prefix: p, connect_timeout_ms: 100, timeout_ms: 20 }
            scoring: { model: m, features: f.yaml, rules: r.yaml, costs: c.yaml, deadline_ms: 30, degradation: review, evaluator: capi, explain_top: 0, threads: 1 }
            admin: { host: 0.0.0.0, port: 0 }
            limits: { max_message_bytes: 4096 }
            api: { host: 10.0.0.5, http_port: 8080, grpc_port: 0, max_wait_us: 500, max_batch: 32, max_pending: 64, max_body_bytes: 2048, max_request_transactions: 10 }
            shadow: { models: [c1, c2], topic: s, budget_us: 900, queue_batches: 8, drift_window_s: 600, outcomes_half_life_s: 3600 }
            """, file: "x.yaml")
        #expect(c.shadow.models == ["c1", "c2"] && c.shadow.topic == "s" && c.shadow.budgetUs == 900 && c.shadow.queueBatches == 8)
        #expect(c.shadow.driftWindowS == 600 && c.shadow.outcomesHalfLifeS == 3600)
        #expect(c.scorerConfiguration(hasher: .insecureDevelopmentKey).challengers == ["c1", "c2"])
        #expect(c.kafka.brokers == "k1:9092,k2:9092" && c.kafka.group == "fraud" && c.kafka.batchSize == 64)
        #expect(c.kafka.topics.deadLetters == "dlq" && c.kafka.topics.labels == "lb")
        #expect(c.kafkaProperties["security.protocol"] == "SASL_SSL" && c.kafkaProperties["bootstrap.servers"] == "k1:9092,k2:9092")
        #expect(c.store.url == "redis://vigil@r:6379/2" && c.store.timeoutMs == 20)
        #expect(c.scoring.degradation == .failClosed && c.scoring.evaluator == .capi && c.scoring.explainTop == 0 && c.scoring.threads == 1)
        #expect(c.scorerConfiguration(hasher: .insecureDevelopmentKey).memberBudget == .milliseconds(30))
        #expect(c.admin.port == 0 && c.limits.maxMessageBytes == 4096)
        #expect(c.api.host == "10.0.0.5" && c.api.httpPort == 8080 && c.api.grpcPort == 0 && c.api.batching.maxWait == .microseconds(500))
        #expect(c.api.batching.maxBatch == 32 && c.api.batching.maxPending == 64 && c.api.maxBodyBytes == 2048 && c.api.maxRequestTransactions == 10)
    }

    @Test("the scoring API on a non-loopback address needs a token")
    func apiOffLoopbackNeedsAToken() throws {
        var c = DaemonConfiguration()
        c.scoring.model = BuiltProduct.packageRoot + "/models/default"
        c.api.host = "0.0.0.0"
        c.api.httpPort = 0
        let secrets = Secrets(hashSecret: Array(Stack.hashSecret.utf8))
        let configuration = c
        #expect { try Daemon(configuration: configuration, secrets: secrets, logger: Logger(label: "test"), reread: { configuration }) } throws: {
            "\($0)".contains("VIGIL_API_TOKEN")
        }
        var withToken = secrets
        withToken.apiToken = "t0ken"
        _ = try Daemon(configuration: configuration, secrets: withToken, logger: Logger(label: "test"), reread: { configuration })
    }

    @Test("bad files fail with file, line and cause", arguments: [
        ("kafka:\n  brokers: a\n  batchsize: 5\n", 3, "unknown key 'batchsize'"),
        ("kafka:\n  batch_size: -1\n", 2, "kafka.batch_size must be an integer"),
        ("scoring:\n  degradation: maybe\n", 2, "scoring.degradation"),
        ("store:\n  url: redis://u:hunter2@h:6379/0\n", 2, "must not carry a password"),
        ("kafka: [1, 2\n", 2, "invalid YAML"),
        ("api:\n  http_port: 8080\n  max_batch: 0\n", 3, "api.max_batch must be an integer"),
    ])
    func badFiles(text: String, line: Int, message: String) {
        do {
            _ = try DaemonConfiguration.parse(text, file: "vigil.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.file == "vigil.yaml")
            #expect(error.line == line, "\(error)")
            #expect(error.description.contains(message), "\(error)")
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test("the admin token comparison is exact")
    func tokenCompare() {
        #expect(Secret.constantTimeEqual("Bearer abc", "Bearer abc"))
        #expect(!Secret.constantTimeEqual("Bearer ab", "Bearer abc"))
        #expect(!Secret.constantTimeEqual("Bearer abd", "Bearer abc"))
        #expect(!Secret.constantTimeEqual("", "Bearer abc"))
    }
}

enum HostileCorpus {
    static let directory = BuiltProduct.packageRoot + "/Tests/Corpus/hostile"
    static var baseline: String { directory + "/accept-baseline.json" }
}

/// `vigild` end to end: its own process, the dev broker over TCP, a real Redis where it matters.
@Suite("vigild end to end", .serialized)
struct DaemonEndToEndTests {
    @Test("clean run: one verdict per transaction, bad input dead-lettered with reasons, kcat reads the verdicts, admin needs its token")
    func cleanRunWithDeadLetters() throws {
        let stack = try Stack()
        let daemon = try stack.startDaemon()
        try daemon.waitReady()
        let txs = Stack.transactions(1500)
        let base = #"{"id":"bad","timestamp":"2026-01-04T06:20:14.443Z","amount":12.5,"currency":"EUR","card_id":"4711052564607753"}"#
        let bad: [(String, String)] = [
            ("{\"id\": \"x1\", \"amount\": ", "malformed JSON"),
            (base.replacingOccurrences(of: #""amount":12.5,"#, with: ""), "amount"),
            (base.replacingOccurrences(of: "12.5", with: "-3"), "amount"),
            (base.replacingOccurrences(of: "12.5", with: #""12.5""#), "amount"),
            (base.replacingOccurrences(of: "2026-01-04", with: "9999-01-04"), "timestamp"),
            ("{\"id\":\"x6\",\"pad\":\"" + String(repeating: "a", count: 70_000) + "\"}", "larger than"),
            ("\u{FF}\u{FE}not json", "malformed JSON"),
        ]
        var messages = txs.map { Stack.message($0) }
        for (i, b) in bad.enumerated() {
            messages.insert(OutgoingMessage(topic: "transactions", key: Array("bad\(i)".utf8), value: Array(b.0.utf8)), at: 100 * (i + 1))
        }
        try stack.publish(messages)

        let verdictMessages = try stack.read("verdicts", count: txs.count)
        let verdicts = VerdictSet(verdictMessages)
        #expect(verdicts.missing(txs.map(\.id)).isEmpty)
        #expect(verdicts.byID.count == txs.count)
        #expect(verdicts.duplicates == 0)
        // Each verdict names its source (topic/partition/offset) and carries the source's key only
        // as its keyed hash, in hex.
        let hasher = try KeyedHasher(secret: Array(Stack.hashSecret.utf8))
        func keyHash(_ key: [UInt8]) -> String { String(hasher.hash(key, domain: 0xFF), radix: 16) }
        let cards = Dictionary(txs.map { ($0.id, $0.cardID) }, uniquingKeysWith: { a, _ in a })
        for m in verdictMessages {
            let id = String(decoding: m.key ?? [], as: UTF8.self)
            let source = m.header("vigil-source")?.split(separator: "/") ?? []
            #expect(source.count == 3 && source[0] == "transactions" && Int32(source[1]) != nil && Int64(source[2]) != nil, "\(source)")
            #expect(m.header("vigil-partition-key-hash") == cards[id]?.flatMap { $0 }.map { keyHash(Array($0.utf8)) })
        }

        let dead = try stack.read("transactions.dlq", count: bad.count, timeout: .seconds(20))
        #expect(dead.count == bad.count)
        for (i, b) in bad.enumerated() {
            let d = try #require(dead.first { $0.key == Array("bad\(i)".utf8)[...] })
            #expect(d.value == Array(b.0.utf8)[...], "original bytes kept")
            #expect(d.header("vigil-reason")?.contains(b.1) == true, "\(d.header("vigil-reason") ?? "no reason") should mention \(b.1)")
            #expect(d.header("vigil-source")?.hasPrefix("transactions/") == true)
            #expect(d.header("vigil-reason-code")?.isEmpty == false)
            #expect(d.header("vigil-partition-key-hash") == keyHash(Array("bad\(i)".utf8)))
        }
        #expect(try daemon.metric("vigil_dead_letters_total{reason=\"malformed_json\"}") == 2)
        #expect(try daemon.metric("vigil_transactions_total") == Double(txs.count + bad.count))

        // kcat, a standard Kafka tool, reads the verdicts.
        let kcat = try ChildProcess("/usr/bin/kcat", ["-C", "-b", stack.bootstrap, "-t", "verdicts", "-e", "-q", "-f", "%k\n"], directory: stack.directory)
        #expect(kcat.wait(timeout: .seconds(30)) == 0)
        #expect(Set(kcat.output.split(separator: "\n").map(String.init)) == Set(txs.map(\.id)))

        // The mutating admin endpoint refuses a request without the token.
        #expect(try HTTP.request(port: daemon.adminPort, "POST", "/admin/reload").status == 401)
        #expect(try HTTP.request(port: daemon.adminPort, "POST", "/admin/reload", headers: ["Authorization": "Bearer wrong"]).status == 401)
        #expect(try HTTP.request(port: daemon.adminPort, "POST", "/admin/reload", headers: ["Authorization": "Bearer \(Stack.adminToken)"]).status == 200)

        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(timeout: .seconds(30)) == 0, "graceful exit: \(daemon.log.suffix(1000))")
    }

    @Test("Redis outage: verdicts degrade and are marked, then recover when Redis returns")
    func redisOutage() throws {
        let stack = try Stack(redis: true)
        let daemon = try stack.startDaemon()
        try daemon.waitReady()
        let txs = Stack.transactions(900, seed: 31)
        try stack.publish(txs[0..<300].map { Stack.message($0) })
        var verdicts = VerdictSet(try stack.read("verdicts", count: 300))
        #expect(verdicts.byID.count == 300)
        #expect(verdicts.byID.values.allSatisfy { !$0[0].contains("\"degraded\":true") })

        let port = stack.redis!.port
        stack.redis = nil  // stops it
        try stack.publish(txs[300..<600].map { Stack.message($0) })
        verdicts = VerdictSet(try stack.read("verdicts", count: 600))
        let outage = txs[300..<600].compactMap { verdicts.byID[$0.id]?.first }
        #expect(outage.count == 300)
        #expect(outage.allSatisfy { $0.contains("\"degraded\":true") && $0.contains("store_") })
        #expect(try daemon.metric("vigil_degraded_verdicts_total") >= 300)

        stack.redis = try RedisServer(port: port)
        Thread.sleep(forTimeInterval: 1.5)  // past the breaker's cool-down
        try stack.publish(txs[600..<900].map { Stack.message($0) })
        verdicts = VerdictSet(try stack.read("verdicts", count: 900))
        let after = txs[600..<900].compactMap { verdicts.byID[$0.id]?.first }
        #expect(after.count == 300)
        // Recovery without a manual step: the tail of the wave scores against Redis again.
        #expect(after.suffix(100).allSatisfy { !$0.contains("\"degraded\":true") })
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
    }

    @Test("reload under load (admin endpoint, SIGHUP, and a broken rule file) drops and double-scores nothing")
    func reloadUnderLoad() throws {
        let stack = try Stack()
        let rules = stack.directory + "/rules.yaml"
        try FileManager.default.copyItem(atPath: BuiltProduct.packageRoot + "/rules/default.yaml", toPath: rules)
        // The rule file names its lists relative to itself.
        try? FileManager.default.createSymbolicLink(atPath: stack.directory + "/lists", withDestinationPath: BuiltProduct.packageRoot + "/rules/lists")
        let daemon = try stack.startDaemon(config: "scoring:\n  model: \(BuiltProduct.packageRoot)/models/default\n  rules: \(rules)\n")
        try daemon.waitReady()
        let txs = Stack.transactions(4000, seed: 41)
        let publisher = Thread { try? stack.publish(txs.map { Stack.message($0) }, rate: 1000) }
        publisher.start()
        let auth = ["Authorization": "Bearer \(Stack.adminToken)"]
        for i in 0..<6 {
            Thread.sleep(forTimeInterval: 0.4)
            if i == 2 {
                let good = try String(contentsOfFile: rules, encoding: .utf8)
                try "rules:\n  - id: broken\n    when: amount >\n    action: block\n".write(toFile: rules, atomically: true, encoding: .utf8)
                let r = try HTTP.request(port: daemon.adminPort, "POST", "/admin/reload", headers: auth)
                #expect(r.status == 422)
                #expect(r.body.contains("rules.yaml:3"), "\(r.body)")
                try good.write(toFile: rules, atomically: true, encoding: .utf8)
            } else if i % 2 == 0 {
                daemon.process.signal(SIGHUP)
            } else {
                #expect(try HTTP.request(port: daemon.adminPort, "POST", "/admin/reload", headers: auth).status == 200)
            }
        }
        let verdicts = VerdictSet(try stack.read("verdicts", count: txs.count))
        #expect(verdicts.missing(txs.map(\.id)).isEmpty)
        #expect(verdicts.duplicates == 0)
        #expect(try daemon.metric("vigil_reloads_total{result=\"failed\"}") == 1)
        #expect(try daemon.metric("vigil_reloads_total{result=\"ok\"}") == 5)
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
    }

    @Test("two daemons in one group split the partitions; when one stops the other takes over")
    func twoDaemonsTakeOver() throws {
        let stack = try Stack(redis: true)
        // A batch degraded on a busy test machine (store or model over budget) would rightly
        // differ from its redelivery; that is not what this test is about.
        let config = "store:\n  timeout_ms: 2000\nscoring:\n  deadline_ms: 60000\n  model: \(BuiltProduct.packageRoot)/models/default\n  rules: \(BuiltProduct.packageRoot)/rules/default.yaml\n"
        let a = try stack.startDaemon(config: config)
        let b = try stack.startDaemon(config: config)
        try a.waitReady()
        try b.waitReady()
        let txs = Stack.transactions(4000, seed: 51, days: 1)
        let publisher = Thread { try? stack.publish(txs.map { Stack.message($0) }, rate: 1000) }
        publisher.start()
        #expect(try eventually(timeout: .seconds(20)) { try a.metric("vigil_transactions_total") > 0 && b.metric("vigil_transactions_total") > 0 },
                "both members score")
        a.process.signal(SIGTERM)
        #expect(a.process.wait(timeout: .seconds(30)) == 0)
        let verdicts = VerdictSet(try stack.read("verdicts", count: txs.count, timeout: .seconds(90)))
        #expect(verdicts.missing(txs.map(\.id)).isEmpty)
        #expect(verdicts.differing == 0, "for example \(verdicts.firstDiffering.map { "\n  \($0[0])\n  \($0[1])" } ?? "")")
        b.process.signal(SIGTERM)
        b.process.wait()
    }


    /// A Redis that would evict keys under memory pressure is named at start: windows would
    /// otherwise lose history without any error (docs/operations.md).
    @Test func warnsWhenRedisMayEvict() throws {
        let stack = try Stack(redis: true)
        for setting in [["maxmemory", "1gb"], ["maxmemory-policy", "allkeys-lru"]] {
            let p = try ChildProcess("/usr/bin/redis-cli", ["-p", String(stack.redis!.port), "CONFIG", "SET"] + setting, directory: stack.directory, name: "redis-cli")
            #expect(p.wait(timeout: .seconds(30)) == 0 && p.output.contains("OK"))
        }
        let daemon = try stack.startDaemon()
        try daemon.waitReady()
        #expect(daemon.log.contains("Redis may evict entity logs") && daemon.log.contains("allkeys-lru"), "\(daemon.log.suffix(2000))")
        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(timeout: .seconds(30)) == 0)
    }
    @Test("labels feed the store; no raw card number, email or IP in Redis keys, verdicts or logs")
    func labelsAndNoRawIdentifiers() throws {
        let stack = try Stack(redis: true)
        let daemon = try stack.startDaemon()
        try daemon.waitReady()
        let txs = Stack.transactions(1500, seed: 61)
        let labelled = txs.filter { $0.label == 1 }
        #expect(!labelled.isEmpty)
        try stack.publish(txs.map { Stack.message($0) })
        _ = try stack.read("verdicts", count: txs.count)
        try stack.publish(labelled.map { OutgoingMessage(topic: "labels", key: nil, value: Array("{\"id\":\"\($0.id)\",\"label\":1}".utf8)) })
        #expect(try eventually { try daemon.metric("vigil_labels_total") == Double(labelled.count) })

        let keys = try stack.redisKeys("*")
        #expect(try stack.streamContents("vigil:x:*").fraud > 0, "fraud labels written to the entity logs")
        let verdictText = try stack.read("verdicts", count: txs.count).map { String(decoding: $0.value, as: UTF8.self) + " " + ($0.headers.map { String(decoding: $0.value, as: UTF8.self) }.joined(separator: " ")) }.joined(separator: "\n")
        let logs = daemon.log
        var raw = Set<String>()
        for tx in txs {
            if let c = tx.cardID { raw.insert(c) }
            if let e = tx.email { raw.insert(e) }
            if let ip = tx.ip { raw.insert(ip) }
        }
        let joinedKeys = keys.joined(separator: "\n")
        let leaks = raw.filter { joinedKeys.contains($0) || verdictText.contains($0) || logs.contains($0) }
        #expect(leaks.isEmpty, "raw identifiers found: \(leaks.prefix(5))")
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
    }

    @Test("the hostile corpus through the daemon: every accepted message gets a verdict, every rejected one a dead letter with its reason")
    func hostileCorpus() throws {
        let stack = try Stack()
        let daemon = try stack.startDaemon()
        try daemon.waitReady()
        let files = try FileManager.default.contentsOfDirectory(atPath: HostileCorpus.directory).sorted()
        let messages = try files.map { f in
            OutgoingMessage(topic: "transactions", key: Array(f.utf8), value: [UInt8](try Data(contentsOf: URL(fileURLWithPath: HostileCorpus.directory + "/" + f))))
        }
        try stack.publish(messages)
        let accepted = files.filter { $0.hasPrefix("accept-") }
        let rejected = files.filter { $0.hasPrefix("reject-") }
        let verdicts = try stack.read("verdicts", count: accepted.count, distinctKeys: false, timeout: .seconds(30))
        let dead = try stack.read("transactions.dlq", count: rejected.count, timeout: .seconds(30))
        #expect(Set(verdicts.compactMap { $0.header("vigil-source") }).count == accepted.count)
        #expect(Set(dead.map { String(decoding: $0.key ?? [], as: UTF8.self) }) == Set(rejected))
        #expect(dead.allSatisfy { ($0.header("vigil-reason") ?? "").count > 3 })
        #expect(VerdictSet(verdicts).differing == 0, "the duplicate id got the same verdict twice")
        #expect(daemon.process.isRunning)
        print("fault-result: hostile_corpus messages=\(files.count) verdicts=\(verdicts.count) dead_letters=\(dead.count)")
        daemon.process.signal(SIGTERM)
        #expect(daemon.process.wait(timeout: .seconds(30)) == 0)
    }

    @Test("secrets come from the environment and files and are never logged, even at trace level; admin binds to loopback")
    func secretsNeverLogged() throws {
        let stack = try Stack()
        let redisPassword = "redis-pw-\(UUID().uuidString.prefix(8))"
        stack.redis = try RedisServer(extra: ["--requirepass", redisPassword])
        let secretFile = stack.directory + "/hash.secret"
        let hashSecret = "file-hash-secret-\(UUID().uuidString)"
        try (hashSecret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        let port = RedisServer.freePort()
        let args = ["--brokers", stack.bootstrap, "--admin-port", String(port), "--model", BuiltProduct.packageRoot + "/models/default",
                    "--redis", stack.redis!.url, "--log-level", "trace", "--log-format", "json"]
        let p = try ChildProcess(BuiltProduct.path("vigild"), args,
                                 environment: ["VIGIL_HASH_SECRET_FILE": secretFile, "VIGIL_REDIS_PASSWORD": redisPassword, "VIGIL_ADMIN_TOKEN": Stack.adminToken],
                                 directory: stack.directory, name: "vigild")
        let daemon = Stack.Daemon(process: p, adminPort: port)
        try daemon.waitReady()
        try stack.publish(Stack.transactions(200, seed: 3).map { Stack.message($0) })
        let verdicts = try stack.read("verdicts", count: 200)
        #expect(verdicts.count >= 200)
        #expect(verdicts.allSatisfy { !String(decoding: $0.value, as: UTF8.self).contains("\"degraded\":true") }, "authenticated with the password from the environment")
        #expect(try HTTP.request(port: port, "POST", "/admin/reload").status == 401)
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
        let log = daemon.log
        #expect(log.contains("127.0.0.1:\(port)"), "admin on loopback by default")
        for secret in [redisPassword, hashSecret, Stack.adminToken] {
            #expect(!log.contains(secret), "a secret reached the log")
        }
        // A wrong password is reported without being echoed.
        let wrong = try ChildProcess(BuiltProduct.path("vigil"), ["score", "--model", BuiltProduct.packageRoot + "/models/default", "--store", stack.redis!.url,
                                                                  "--data", HostileCorpus.baseline],
                                     environment: ["VIGIL_REDIS_PASSWORD": "wrong-password-123"], directory: stack.directory, name: "score")
        wrong.wait(timeout: .seconds(60))
        #expect(!(wrong.output + wrong.errorOutput).contains("wrong-password-123"))
    }

    @Test("the development broker and the load driver say so when the broker deletes messages nobody read")
    func developmentBrokerRetentionWarnings() throws {
        let stack = try Stack(partitions: 1)
        // ~8 MB into one partition that keeps ~5 MiB, and no consumer.
        let p = try ChildProcess(BuiltProduct.path("vigil"), ["produce", "--brokers", stack.bootstrap, "--simulate", "20000", "--rate", "0"],
                                 directory: stack.directory, name: "produce")
        #expect(p.wait(timeout: .seconds(90)) == 0, "\(p.errorOutput.suffix(1000))")
        #expect(p.errorOutput.contains("MiB per partition sent to the development broker"), "\(p.errorOutput.suffix(500))")
        #expect(try eventually(timeout: .seconds(15)) { stack.broker.errorOutput.contains("transactions[0] is over ~5 MiB and deletes its oldest messages") },
                "\(stack.broker.errorOutput.suffix(500))")
    }

    @Test("vigil produce paces a stream and reports every verdict with its latency")
    func produceCommand() throws {
        let stack = try Stack()
        let daemon = try stack.startDaemon()
        try daemon.waitReady()
        let summary = stack.directory + "/summary.json"
        let p = try ChildProcess(BuiltProduct.path("vigil"), ["produce", "--brokers", stack.bootstrap, "--simulate", "800", "--rate", "400",
                                                              "--await-verdicts", "verdicts", "--summary-json", summary,
                                                              "--cpu-of", "vigild=\(daemon.process.pid)"],
                                 directory: stack.directory, name: "produce")
        #expect(p.wait(timeout: .seconds(90)) == 0, "\(p.errorOutput.suffix(1000))")
        let json = try String(contentsOfFile: summary, encoding: .utf8)
        let fields = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        #expect(fields["missing"] as? Int == 0)
        #expect(fields["differing"] as? Int == 0)
        #expect((fields["verdicts"] as? Int ?? 0) >= 800)
        #expect((fields["p50_ms"] as? Double ?? 0) > 0)
        // The verdict is produced before it is read back: that part of the latency is at most
        // the whole (up to the timestamp's whole milliseconds).
        let produced = fields["produced_p99_ms"] as? Double ?? -1, whole = fields["p99_ms"] as? Double ?? 0
        #expect(produced > 0 && produced <= whole + 1, "sent-to-produced p99 \(produced) ms, whole p99 \(whole) ms")
        #expect(p.errorOutput.contains("tx/s"), "live progress")
        // vigild's own CPU over the run: some of it in librdkafka's threads, not all.
        let cpu = (fields["cpu"] as? [String: Any])?["vigild"] as? [String: Double] ?? [:]
        let seconds = cpu["seconds"] ?? 0, librdkafka = cpu["librdkafka_seconds"] ?? 0
        #expect(seconds > 0 && librdkafka > 0 && librdkafka < seconds, "vigild CPU over the run: \(cpu)")
        #expect(p.output.contains("CPU of vigild from the first message to the last verdict"))
        // A process that is not there is a usage error before anything is sent.
        let wrong = try ChildProcess(BuiltProduct.path("vigil"), ["produce", "--brokers", stack.bootstrap, "--simulate", "10",
                                                                  "--cpu-of", "vigild=2147483646"], directory: stack.directory, name: "wrong")
        #expect(wrong.wait(timeout: .seconds(30)).map { $0 >> 8 } == 64)
        #expect(wrong.errorOutput.contains("--cpu-of vigild=2147483646: no such process"), "\(wrong.errorOutput.suffix(300))")
        daemon.process.signal(SIGTERM)
        daemon.process.wait()
    }
}
