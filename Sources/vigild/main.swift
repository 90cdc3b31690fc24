import ArgumentParser
import Foundation
import Logging
import Vigil
import VigilDaemon

/// `vigild`: consumes transactions from Kafka, publishes verdicts. See `docs/configuration.md`.
@main
struct Vigild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigild",
        abstract: "Vigil's fraud-scoring daemon: transactions in from Kafka, verdicts out.",
        discussion: """
            Flags override the configuration file; without a file every option has its default \
            (docs/configuration.md). Secrets come from the environment only: VIGIL_HASH_SECRET, \
            VIGIL_REDIS_PASSWORD, VIGIL_ADMIN_TOKEN, VIGIL_API_TOKEN (or each with _FILE naming a file). \
            SIGHUP reloads rules, lists, model and costs; SIGTERM/SIGINT drain, commit and exit.
            """)

    @Option(help: "Configuration file (YAML).") var config: String?
    @Option(help: "Kafka bootstrap servers.") var brokers: String?
    @Option(help: "Velocity store: a Redis URL, or 'memory'.") var redis: String?
    @Option(help: "Model bundle directory.") var model: String?
    @Option(help: "A challenger bundle scored in shadow beside the champion (repeatable; replaces shadow.models).") var shadowModel: [String] = []
    @Option(help: "Rule file.") var rules: String?
    @Option(help: "Decision cost file.") var costs: String?
    @Option(help: "Consumer group id.") var group: String?
    @Option(help: "Admin HTTP port (0 picks a free one).") var adminPort: Int?
    @Option(help: "Synchronous scoring API over HTTP/JSON on this port (0 picks a free one); off by default.") var httpPort: Int?
    @Option(help: "Synchronous scoring API over gRPC on this port (0 picks a free one); off by default.") var grpcPort: Int?
    @Option(name: .customLong("property"), help: "A librdkafka property, name=value (repeatable; overrides the file).")
    var properties: [String] = []
    @Flag(help: "Allow the built-in development hash key when VIGIL_HASH_SECRET is unset (simulated data only).")
    var allowDevHashKey = false
    @Option(help: "Log format: text or json.") var logFormat: LogFormat = .text
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"

    enum LogFormat: String, ExpressibleByArgument { case text, json }

    func effectiveConfiguration() throws(ConfigurationError) -> DaemonConfiguration {
        var c = try config.map { (p) throws(ConfigurationError) in try DaemonConfiguration.load(path: p) } ?? DaemonConfiguration()
        if let brokers { c.kafka.brokers = brokers }
        if let redis { c.store.url = redis }
        if let model { c.scoring.model = model }
        if !shadowModel.isEmpty { c.shadow.models = shadowModel }
        if let rules { c.scoring.rules = rules }
        if let costs { c.scoring.costs = costs }
        if let group { c.kafka.group = group }
        if let adminPort { c.admin.port = adminPort }
        if let httpPort { c.api.httpPort = httpPort }
        if let grpcPort { c.api.grpcPort = grpcPort }
        for kv in properties {
            guard let eq = kv.firstIndex(of: "=") else {
                throw ConfigurationError(file: nil, line: nil, message: "--property takes name=value (got '\(kv)')")
            }
            c.kafka.properties[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
        }
        return c
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var h: any LogHandler = format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "vigild")
        do {
            let configuration = try effectiveConfiguration()
            let command = self
            let daemon = try Daemon(
                configuration: configuration, secrets: .fromEnvironment(), allowDevelopmentHashKey: allowDevHashKey,
                logger: logger, reread: { () throws(ConfigurationError) in try command.effectiveConfiguration() })
            try await daemon.run()
        } catch let error as ConfigurationError {
            logger.critical("cannot start: \(error)")
            throw ExitCode(78)  // EX_CONFIG
        }
    }
}
