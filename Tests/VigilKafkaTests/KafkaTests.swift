import Foundation
import Testing
import VigilKafka

/// The Kafka client against librdkafka's mock cluster, over TCP like any broker.
@Suite("Kafka client", .serialized)
struct KafkaTests {
    func consumeAll(_ consumer: KafkaConsumer, count: Int, timeout: Duration = .seconds(20)) -> [KafkaMessage] {
        var out: [KafkaMessage] = []
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while out.count < count, clock.now < deadline {
            out += consumer.poll(max: 500, timeout: .milliseconds(100))
        }
        return out
    }

    @Test("produce with keys and headers, consume in a group, resume from the committed offset")
    func roundTripAndCommit() throws {
        let broker = try DevBroker()
        try broker.createTopic("t", partitions: 2)
        let props: KafkaProperties = ["bootstrap.servers": broker.bootstrapServers]
        let producer = try KafkaProducer(properties: props)
        for i in 0..<100 {
            try producer.send(OutgoingMessage(topic: "t", key: Array("k\(i % 7)".utf8), value: Array("v\(i)".utf8),
                                              headers: [("h", Array("x\(i)".utf8))]), token: UInt64(i + 1))
        }
        #expect(producer.flush(timeout: .seconds(10)))
        let delivered = producer.poll()
        #expect(delivered.count == 100)
        #expect(delivered.allSatisfy { $0.error == nil })
        #expect(Set(delivered.map(\.token)) == Set(1...100))

        var group = props
        group["group.id"] = "g"
        group["session.timeout.ms"] = "6000"  // the mock cluster holds a rejoin for the session timeout
        var first: [KafkaMessage] = []
        do {
            let consumer = try KafkaConsumer(properties: group, topics: ["t"])
            first = consumeAll(consumer, count: 100)
            #expect(first.count == 100)
            #expect(Set(first.map { String(decoding: $0.value, as: UTF8.self) }).count == 100)
            let m = try #require(first.first { $0.value == Array("v5".utf8)[...] })
            #expect(m.header("h") == "x5")
            #expect(m.key == Array("k5".utf8)[...])
            // Commit only the first half of each partition.
            var offsets: [TopicPartition: Int64] = [:]
            for p in Set(first.map(\.partition)) {
                let inPartition = first.filter { $0.partition == p }.map(\.offset).sorted()
                offsets[TopicPartition("t", p)] = inPartition[inPartition.count / 2]
            }
            try consumer.commit(offsets, wait: .seconds(10))
            consumer.close()
        }
        let again = try KafkaConsumer(properties: group, topics: ["t"])
        let rest = consumeAll(again, count: 50, timeout: .seconds(40))
        #expect(rest.count == 50)
        #expect(rest.allSatisfy { m in first.contains { $0.partition == m.partition && $0.offset == m.offset } })
        again.close()

        // A consumer that does not read headers gets the same messages without them.
        var other = group
        other["group.id"] = "g2"
        let plain = try KafkaConsumer(properties: other, topics: ["t"], readsHeaders: false)
        let all = consumeAll(plain, count: 100)
        #expect(all.count == 100)
        #expect(all.allSatisfy { $0.headers.isEmpty })
        #expect(Set(all.map(\.value)) == Set(first.map(\.value)))
        plain.close()
    }

    /// A consumed batch's keys and values are slices of one buffer, and the producer names topics
    /// by handles it keeps: each message must still come back with exactly its own bytes, keyless
    /// and empty ones included, whichever topic it went to.
    @Test("messages keep their own bytes: keyless, empty and large, across two topics")
    func bytesPerMessage() throws {
        let broker = try DevBroker()
        for t in ["a", "b"] { try broker.createTopic(t, partitions: 2) }
        let props: KafkaProperties = ["bootstrap.servers": broker.bootstrapServers]
        let producer = try KafkaProducer(properties: props)
        var sent: [String: Set<[UInt8]>] = ["a": [], "b": []]
        var rng = SystemRandomNumberGenerator()
        for i in 0..<400 {
            let topic = i % 3 == 0 ? "b" : "a"
            let size = i % 10 == 0 ? 0 : Int.random(in: 1...3000, using: &rng)
            // The message's number leads its value, so each is distinct; its key (or none) follows.
            let value = size == 0 ? [] : Array("\(i):".utf8) + (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let key: [UInt8]? = i % 4 == 0 ? nil : Array("key-\(i)".utf8)
            try producer.send(OutgoingMessage(topic: topic, key: key, value: value), token: UInt64(i + 1))
            sent[topic]!.insert((key.map { [1] + $0 } ?? [0]) + [0xFF] + value)
        }
        #expect(producer.flush(timeout: .seconds(10)))
        #expect(producer.poll().allSatisfy { $0.error == nil })
        var group = props
        group["group.id"] = "bytes"
        let consumer = try KafkaConsumer(properties: group, topics: ["a", "b"], readsHeaders: false)
        defer { consumer.close() }
        let got = consumeAll(consumer, count: 400)
        #expect(got.count == 400)
        var received: [String: Set<[UInt8]>] = ["a": [], "b": []]
        for m in got { received[m.topic, default: []].insert((m.key.map { [1] + $0 } ?? [0]) + [0xFF] + m.value) }
        for topic in ["a", "b"] {
            let differing = received[topic, default: []].symmetricDifference(sent[topic]!).count
            #expect(differing == 0, "\(differing) messages on \(topic) not as sent")
        }
    }

    @Test("with the broker down, a waiting commit times out and a close gives up when told to")
    func boundedCommitAndClose() throws {
        let broker = try DevBroker()
        try broker.createTopic("t", partitions: 1)
        let props: KafkaProperties = ["bootstrap.servers": broker.bootstrapServers]
        let producer = try KafkaProducer(properties: props)
        try producer.send(OutgoingMessage(topic: "t", key: nil, value: Array("v".utf8), headers: []), token: 1)
        #expect(producer.flush(timeout: .seconds(10)))
        var group = props
        group["group.id"] = "bounded"
        group["session.timeout.ms"] = "6000"
        let consumer = try KafkaConsumer(properties: group, topics: ["t"])
        let got = consumeAll(consumer, count: 1)
        #expect(got.count == 1)
        #expect(broker.setDown(true).isEmpty)
        let offsets = [TopicPartition("t", 0): got[0].offset + 1]
        #expect {
            try consumer.commit(offsets, wait: .milliseconds(500))
        } throws: { error in
            (error as? KafkaError)?.isTimeout == true
        }
        #expect(consumer.close(timeout: .milliseconds(500)) == false)
        #expect(!consumer.isClosed)
        // Idempotent, and says the same.
        #expect(consumer.close() == false)
        // Once the broker answers, librdkafka's close finishes on its own (and the handle can go).
        broker.setDown(false)
        let clock = ContinuousClock(), deadline = clock.now + .seconds(30)
        while !consumer.isClosed, clock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(consumer.isClosed)
    }

    @Test("a bad librdkafka property fails with its name")
    func badProperty() throws {
        #expect(throws: KafkaError.self) { try KafkaProducer(properties: ["no.such.property": "1"]) }
        do {
            _ = try KafkaProducer(properties: ["linger.ms": "not-a-number"])
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("linger.ms"))
        }
    }
}
