import ArgumentParser
import Foundation
import Vigil
import VigilKafka
import VigilSimulator

/// `vigil bench-kafka`: the broker's own ceiling for the daemon's traffic shape — produce, then
/// consume in a group, re-produce each message and commit after the acknowledgements, with no
/// scoring. The load benchmark quotes it next to the daemon's figures.
struct BenchKafka: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kafka",
        abstract: "Measure a broker's raw produce and consume+produce+commit rates with transaction-sized messages.")

    @Option(help: "Kafka bootstrap servers.") var brokers: String
    @Option(help: "Messages.") var messages = 100_000
    @Option(help: "Batch size of the pass-through loop.") var batchSize = 512

    func run() throws {
        let props: KafkaProperties = ["bootstrap.servers": brokers]
        let run = "bench-\(getpid())-\(Int(Date().timeIntervalSince1970))"
        var o = Simulator.Options(transactions: min(messages, 20_000), days: 10, seed: 3)
        o.start = Int64(Date().timeIntervalSince1970 * 1000) - 10 * 86_400_000
        let sample = Simulator(options: o).generate().map { Array(Simulator.json($0).utf8) }
        let clock = ContinuousClock()

        let producer = try KafkaProducer(properties: props)
        var start = clock.now
        for i in 0..<messages {
            try producer.send(OutgoingMessage(topic: run + ".in", key: Array("k\(i % 4096)".utf8), value: sample[i % sample.count]), token: 1)
            if i & 1023 == 0 { _ = producer.poll() }
        }
        guard producer.flush(timeout: .seconds(60)) else { throw ValidationError("produce not acknowledged") }
        _ = producer.poll()
        let produceSeconds = (clock.now - start).seconds

        var p = props
        p["group.id"] = run
        let consumer = try KafkaConsumer(properties: p, topics: [run + ".in"])
        var first: [KafkaMessage] = []
        while first.isEmpty { first = consumer.poll(max: batchSize, timeout: .milliseconds(100)) }  // the group join is not timed
        start = clock.now
        var done = 0
        var acked = 0
        var pending = first
        while done < messages {
            let batch = pending.isEmpty ? consumer.poll(max: batchSize, timeout: .milliseconds(100)) : pending
            pending = []
            var offsets: [TopicPartition: Int64] = [:]
            for m in batch {
                try producer.send(OutgoingMessage(topic: run + ".out", key: m.key, value: m.value), token: 1)
                offsets[TopicPartition(m.topic, m.partition)] = max(offsets[TopicPartition(m.topic, m.partition)] ?? 0, m.offset + 1)
            }
            done += batch.count
            while acked < done - 4 * batchSize { acked += producer.poll(timeout: .milliseconds(1)).count }
            try consumer.commit(offsets, wait: false)
        }
        _ = producer.flush(timeout: .seconds(60))
        let passSeconds = (clock.now - start).seconds
        consumer.close()
        print("produce: \(messages) messages in \(String(format: "%.2f", produceSeconds)) s = \(Int(Double(messages) / produceSeconds)) msg/s")
        print("consume+produce+commit: \(messages) in \(String(format: "%.2f", passSeconds)) s = \(Int(Double(messages) / passSeconds)) msg/s")
    }
}
