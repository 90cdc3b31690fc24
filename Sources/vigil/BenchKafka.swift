import ArgumentParser
import Foundation
import Vigil
import VigilCore
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
    @Option(help: "Messages per round (the development broker keeps about 5 MiB per partition, so rounds stay small).")
    var messages = 10_000
    @Option(help: "Rounds, each on fresh topics.") var rounds = 10
    @Option(help: "Batch size of the pass-through loop.") var batchSize = 512

    func run() throws {
        let props: KafkaProperties = ["bootstrap.servers": brokers]
        var o = Simulator.Options(transactions: min(messages, 20_000), days: 10, seed: 3)
        o.start = Int64(Date().timeIntervalSince1970 * 1000) - 10 * 86_400_000
        let sample = Simulator(options: o).generate().map { Array(Simulator.json($0).utf8) }
        let clock = ContinuousClock()
        let keyHash = Array("3f2a9c0d51e7b846".utf8)
        let producer = try KafkaProducer(properties: props)
        var produceTime = Duration.zero
        var passTime = Duration.zero
        var passCPU = ProcessCPU(seconds: 0, librdkafkaSeconds: 0)
        for round in 0..<rounds {
            let topic = "bench-\(getpid())-\(round)"
            // Both topics exist before any clock starts: creating one on first use held the timed
            // loop for the broker's metadata answer (the earlier 11,000 msg/s "pass-through").
            let inTopic = topic + ".in", outTopic = topic + ".out"
            try producer.prepare(topics: [inTopic, outTopic], timeout: .seconds(10))
            var start = clock.now
            for i in 0..<messages {
                try producer.send(OutgoingMessage(topic: inTopic, key: Array("k\(i % 4096)".utf8), value: sample[i % sample.count]), token: 1)
                if i & 1023 == 0 { _ = producer.poll() }
            }
            guard producer.flush(timeout: .seconds(60)) else { throw ValidationError("produce not acknowledged") }
            _ = producer.poll()
            produceTime += clock.now - start

            var p = props
            p["group.id"] = topic
            p["fetch.wait.max.ms"] = "10"  // a consumer's property (the producer warns of it)
            // Headers not read, as vigild does not read them (parsing them cost ~1,000 instructions a message).
            let consumer = try KafkaConsumer(properties: p, topics: [inTopic], readsHeaders: false)
            var pending: [KafkaMessage] = []
            let joinDeadline = clock.now + .seconds(30)
            while pending.isEmpty {  // the group join is not timed
                guard clock.now < joinDeadline else { throw ValidationError("no messages: did the consumer join?") }
                pending = consumer.poll(max: batchSize, timeout: .milliseconds(100))
            }
            start = clock.now
            let cpuBefore = ProcessCPU.sample(pid: getpid())
            var done = 0
            var acked = 0
            var idleSince = clock.now
            while done < messages {
                let batch = pending.isEmpty ? consumer.poll(max: batchSize, timeout: .milliseconds(100)) : pending
                pending = []
                if batch.isEmpty {
                    guard clock.now - idleSince < .seconds(10) else { throw ValidationError("pass-through stalled at \(done) of \(messages)") }
                    continue
                }
                idleSince = clock.now
                // The daemon's shape and its economy: each output carries where it came from and
                // a key hash, written for the whole batch into one buffer; a partition's offset is
                // noted once per run of its messages. What remains is the Kafka client's own cost.
                var bytes: [UInt8] = []
                bytes.reserveCapacity(batch.count * 32)
                var sources: [Range<Int>] = []
                sources.reserveCapacity(batch.count)
                var offsets: [TopicPartition: Int64] = [:]
                batch.withUnsafeBufferPointer { batch in
                    for i in batch.indices {
                        let start = bytes.count
                        bytes += batch[i].topic.utf8
                        bytes.append(UInt8(ascii: "/"))
                        ASCIINumbers.appendDecimal(Int64(batch[i].partition), to: &bytes)
                        bytes.append(UInt8(ascii: "/"))
                        ASCIINumbers.appendDecimal(batch[i].offset, to: &bytes)
                        sources.append(start..<bytes.count)
                        if i + 1 == batch.count || batch[i + 1].partition != batch[i].partition {
                            offsets[TopicPartition(batch[i].topic, batch[i].partition)] = batch[i].offset + 1
                        }
                    }
                }
                var headers: [OutgoingHeader] = []
                headers.reserveCapacity(2 * batch.count)
                for r in sources {
                    headers.append(OutgoingHeader("vigil-source", bytes[r]))
                    headers.append(OutgoingHeader("vigil-partition-key-hash", keyHash[...]))
                }
                try batch.withUnsafeBufferPointer { batch in
                    for i in batch.indices {
                        try producer.send(OutgoingMessage(topic: outTopic, key: batch[i].key, value: batch[i].value, headers: headers[(2 * i)..<(2 * i + 2)]), token: 1)
                    }
                }
                done += batch.count
                while acked < done - 4 * batchSize { acked += producer.poll(timeout: .milliseconds(1)).count }
                try consumer.commit(offsets, wait: nil)
            }
            _ = producer.flush(timeout: .seconds(60))
            _ = producer.poll()
            passTime += clock.now - start
            if let cpuBefore, let after = ProcessCPU.sample(pid: getpid()) { passCPU = passCPU + (after - cpuBefore) }
            consumer.close()
        }
        let total = Double(messages * rounds)
        print("produce: \(Int(total)) messages in \(String(format: "%.2f", produceTime.seconds)) s = \(Int(total / produceTime.seconds)) msg/s")
        print("consume+produce+commit: \(Int(total)) in \(String(format: "%.2f", passTime.seconds)) s = \(Int(total / passTime.seconds)) msg/s")
        print("consume+produce+commit CPU of this process: \(String(format: "%.2f", passCPU.seconds / total * 1e6)) µs per message (librdkafka's threads \(String(format: "%.2f", passCPU.librdkafkaSeconds / total * 1e6)))")
    }
}
