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
    @Option(help: "Topics to create, comma-separated.") var topics = "transactions,verdicts,transactions.dlq,labels"
    @Option(help: "Brokers in the cluster.") var brokers = 1

    func validate() throws {
        guard (1...256).contains(partitions) else { throw ValidationError("--partitions must be 1…256") }
        guard (1...9).contains(brokers) else { throw ValidationError("--brokers must be 1…9") }
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
        var received: Int32 = 0
        while true {
            sigwait(&signals, &received)
            switch received {
            case SIGUSR1:
                broker.setDown(true)
                stderr("dev broker: brokers down")
            case SIGUSR2:
                broker.setDown(false)
                stderr("dev broker: brokers up")
            default:
                stderr("dev broker: stopping")
                return
            }
        }
    }
}
