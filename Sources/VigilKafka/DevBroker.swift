import CRdKafka

/// librdkafka's mock cluster: a Kafka-protocol broker over TCP on loopback, in this process.
///
/// For development, tests and load runs on machines without a Kafka broker. It keeps messages in
/// memory (about 5 MiB per partition; older ones are dropped), supports consumer groups and
/// offset commits, and listens on ports of the operating system's choosing (librdkafka 2.0 has no
/// setting for a fixed port). Point clients at a real cluster through `kafka.properties` instead.
public final class DevBroker: @unchecked Sendable {
    let client: OpaquePointer
    let cluster: OpaquePointer

    /// The `bootstrap.servers` value for clients.
    public let bootstrapServers: String
    let brokerCount: Int

    public init(brokers: Int = 1) throws(KafkaError) {
        let conf = try KafkaConf.make(["log_level": "3"])
        client = try KafkaConf.handle(RD_KAFKA_PRODUCER, conf)
        guard let cluster = rd_kafka_mock_cluster_new(client, Int32(brokers)) else {
            rd_kafka_destroy(client)
            throw KafkaError("cannot start the mock cluster")
        }
        self.cluster = cluster
        brokerCount = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        if let watcher { rd_kafka_destroy(watcher) }
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(client)
    }

    /// A client of the cluster itself, for ``logStart(topic:partition:)``.
    private lazy var watcher: OpaquePointer? = {
        guard let conf = try? KafkaConf.make(["bootstrap.servers": bootstrapServers, "log_level": "3"]) else { return nil }
        return try? KafkaConf.handle(RD_KAFKA_PRODUCER, conf)
    }()

    /// The oldest offset a partition still holds: above 0 once the cluster has deleted messages
    /// to stay under ``partitionBytes``. Nil if the cluster does not answer.
    public func logStart(topic: String, partition: Int) -> Int64? {
        guard let watcher else { return nil }
        var low: Int64 = 0, high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(watcher, topic, Int32(partition), &low, &high, 2000)
        return err == RD_KAFKA_RESP_ERR_NO_ERROR ? low : nil
    }

    /// Takes every broker down (connections closed, new ones refused) or brings them back up:
    /// what clients see when a broker restarts. Messages and offsets are kept.
    /// - Returns: what failed, per broker (empty when all went well).
    @discardableResult
    public func setDown(_ down: Bool) -> [String] {
        (1...brokerCount).compactMap { id in
            let err = down ? rd_kafka_mock_broker_set_down(cluster, Int32(id)) : rd_kafka_mock_broker_set_up(cluster, Int32(id))
            return err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : "broker \(id): \(String(cString: rd_kafka_err2str(err)))"
        }
    }

    /// Whether a cluster id is that of librdkafka's mock cluster (`vigil dev-broker`).
    public static func isDevelopmentCluster(id: String?) -> Bool { id?.hasPrefix("mockCluster") ?? false }

    /// Bytes the mock cluster keeps per partition before deleting the oldest messages, consumed
    /// or not (librdkafka 2.0; not configurable).
    public static let partitionBytes = 5 * 1024 * 1024

    /// Creates a topic (clients may also auto-create topics, with the mock's default partitions).
    public func createTopic(_ name: String, partitions: Int) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), 1)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "create topic \(name)") }
    }
}
