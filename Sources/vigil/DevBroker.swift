import ArgumentParser
import Foundation
import VigilKafka

/// `vigil dev-broker`: librdkafka's mock cluster as a process, for development and tests.
struct DevBrokerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-broker",
        abstract: "Host a development Kafka broker (librdkafka's mock cluster) and print its bootstrap address.",
        discussion: """
            The first line of output is the bootstrap address (host:port). The broker speaks the \
            Kafka protocol over TCP on loopback, keeps messages in memory (about 5 MiB per \
            partition), and runs until SIGINT or SIGTERM. librdkafka 2.0 picks the port itself; \
            there is no fixed --port.
            """)

    @Option(help: "Partitions per topic.") var partitions = 4
    @Option(help: "Topics to create, comma-separated.") var topics = "transactions,verdicts,transactions.dlq,labels,verdicts.shadow"
    @Option(help: "Brokers in the cluster.") var brokers = 1

    func validate() throws {
        guard (1...256).contains(partitions) else { throw ValidationError("--partitions must be 1…256") }
        guard (1...9).contains(brokers) else { throw ValidationError("--brokers must be 1…9") }
    }

    /// Says so when the broker deletes messages to stay under its ~5 MiB per partition: a
    /// consumer that had not read them yet never will, and a load run would count them missing.
    func watchRetention(_ broker: DevBroker, topics: [String]) {
        let partitions = partitions
        let thread = Thread {
            var reported: [String: Int64] = [:]
            while true {
                Thread.sleep(forTimeInterval: 2)
                for t in topics {
                    for p in 0..<partitions {
                        guard let start = broker.logStart(topic: t, partition: p), start > reported["\(t)[\(p)]", default: 0] else { continue }
                        if reported["\(t)[\(p)]"] == nil {
                            stderr("dev broker: warning: \(t)[\(p)] is over ~5 MiB and deletes its oldest messages, read or not (now below offset \(start)); a consumer that falls behind loses them — shorter runs, more partitions or a real broker avoid it")
                        }
                        reported["\(t)[\(p)]"] = start
                    }
                }
            }
        }
        thread.start()
    }

    func run() throws {
        // Block the stop signals before librdkafka starts its threads, then wait for one here.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGUSR1)
        sigaddset(&signals, SIGUSR2)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let broker = try DevBroker(brokers: brokers)
        for t in topics.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !t.isEmpty {
            try broker.createTopic(t, partitions: partitions)
        }
        FileHandle.standardOutput.write(Data((broker.bootstrapServers + "\n").utf8))
        stderr("dev broker: \(brokers) broker(s), topics \(topics) with \(partitions) partitions each; Ctrl-C stops")
        watchRetention(broker, topics: topics.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        var received: Int32 = 0
        while true {
            sigwait(&signals, &received)
            switch received {
            case SIGUSR1:
                let failed = broker.setDown(true)
                stderr(failed.isEmpty ? "dev broker: brokers down" : "dev broker: cannot take brokers down: \(failed.joined(separator: "; "))")
            case SIGUSR2:
                // If a broker cannot listen again, clients see "connection refused": say so.
                let failed = broker.setDown(false)
                stderr(failed.isEmpty ? "dev broker: brokers up" : "dev broker: cannot bring brokers up: \(failed.joined(separator: "; "))")
            default:
                stderr("dev broker: stopping")
                return
            }
        }
    }
}
