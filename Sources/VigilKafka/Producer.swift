import CRdKafka
import Synchronization

/// A delivery report: the `token` given to ``KafkaProducer/send(_:token:)`` and the outcome.
public struct Delivery: Sendable {
    public var token: UInt64
    public var error: KafkaError?
}

/// A producer over librdkafka that reports each message's delivery by token.
///
/// Thread-safe for `send`; delivery reports are collected by ``poll(timeout:)``.
public final class KafkaProducer: @unchecked Sendable {
    final class Reports {
        let delivered = Mutex<[Delivery]>([])
    }

    let handle: OpaquePointer
    let reports = Reports()
    /// A handle per topic produced to (or prepared), kept for the producer's life: librdkafka
    /// keeps their metadata, and a message names its topic by handle (by name, every message
    /// took the client's write lock to find it). A handful, the last one used first, so a
    /// caller's topic is found by comparing its string with itself (a dictionary's hashing of
    /// the name cost more than librdkafka's own lookup).
    private let topics = Mutex<[(name: String, address: UInt)]>([])  // rd_kafka_topic_t addresses

    /// - Parameter properties: passed through; `bootstrap.servers` is required. Defaults:
    ///   `acks=all`, `linger.ms=1`.
    public init(properties: KafkaProperties) throws(KafkaError) {
        var p = properties
        if p["acks"] == nil, p["request.required.acks"] == nil { p["acks"] = "all" }
        if p["linger.ms"] == nil, p["queue.buffering.max.ms"] == nil { p["linger.ms"] = "1" }
        let conf = try KafkaConf.make(p)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(reports).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            let reports = Unmanaged<KafkaProducer.Reports>.fromOpaque(opaque).takeUnretainedValue()
            let m = message.pointee
            let token = UInt64(UInt(bitPattern: m._private))
            let error = m.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(m.err, "deliver")
            reports.delivered.withLock { $0.append(Delivery(token: token, error: error)) }
        }
        handle = try KafkaConf.handle(RD_KAFKA_PRODUCER, conf)
    }

    deinit {
        rd_kafka_flush(handle, 5000)
        for t in topics.withLock({ $0 }) { rd_kafka_topic_destroy(OpaquePointer(bitPattern: t.address)) }
        rd_kafka_destroy(handle)
    }

    /// Learns the topics' partitions and leaders now, and returns each topic's partition count.
    /// Without it the first message to a topic waits for librdkafka's next metadata scan
    /// (measured: up to 1 s, the whole first second of a run arriving late). Throws when a topic
    /// does not exist or the cluster does not answer.
    @discardableResult
    public func prepare(topics: [String], timeout: Duration) throws(KafkaError) -> [String: Int] {
        var partitions: [String: Int] = [:]
        for name in Set(topics) {
            let topic = try handle(of: name)
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(handle, 0, topic, &metadata, timeout.librdkafkaMilliseconds)
            defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let m = metadata?.pointee else { throw KafkaError(err, "metadata for \(name)") }
            guard m.topic_cnt > 0, m.topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(m.topic_cnt > 0 ? m.topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "topic \(name)")
            }
            partitions[name] = Int(m.topics[0].partition_cnt)
        }
        return partitions
    }

    /// The handle of topic `name`, made on first use.
    private func handle(of name: String) throws(KafkaError) -> OpaquePointer {
        let known = topics.withLock { known -> UInt? in
            guard let i = known.firstIndex(where: { $0.name == name }) else { return nil }
            if i > 0 { known.swapAt(0, i) }
            return known[0].address
        }
        if let known { return OpaquePointer(bitPattern: known)! }
        guard let made = rd_kafka_topic_new(handle, name, nil) else { throw KafkaError(rd_kafka_last_error(), "topic \(name)") }
        let kept = topics.withLock { known in
            if let other = known.first(where: { $0.name == name }) { return other.address }  // another thread made it first
            known.append((name, UInt(bitPattern: made)))
            return UInt(bitPattern: made)
        }
        if kept != UInt(bitPattern: made) { rd_kafka_topic_destroy(made) }
        return OpaquePointer(bitPattern: kept)!
    }

    /// The cluster's id, if it answers within `timeout`.
    public func clusterID(timeout: Duration) -> String? {
        guard let id = rd_kafka_clusterid(handle, timeout.librdkafkaMilliseconds) else { return nil }
        defer { rd_kafka_mem_free(handle, id) }
        return String(cString: id)
    }

    /// Queues a message; `token` (nonzero) comes back in its ``Delivery``. When librdkafka's
    /// queue is full this serves delivery reports and retries, so a slow broker slows the caller
    /// (backpressure) instead of dropping.
    public func send(_ message: OutgoingMessage, token: UInt64) throws(KafkaError) {
        precondition(token != 0, "delivery token 0 is reserved")
        let topic = try handle(of: message.topic)
        while true {
            var headers: OpaquePointer?
            if !message.headers.isEmpty {
                headers = rd_kafka_headers_new(message.headers.count)
                // Names through `withCString` (a short name on the stack): passed as a `String`
                // where C wants `const char *`, each became an array on the heap.
                for i in message.headers.indices {
                    message.headers[i].name.withCString { name in
                        message.headers[i].value.withUnsafeBytes { _ = rd_kafka_header_add(headers, name, -1, $0.baseAddress, $0.count) }
                    }
                }
            }
            let err = message.value.withUnsafeBytes { v in
                withKey(message.key) { k, klen in
                    vigil_rd_kafka_produce(handle, topic, k, klen, v.baseAddress, v.count, headers,
                                           UnsafeMutableRawPointer(bitPattern: UInt(token)))
                }
            }
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
            if let headers { rd_kafka_headers_destroy(headers) }
            guard err == RD_KAFKA_RESP_ERR__QUEUE_FULL else { throw KafkaError(err, "produce to \(message.topic)") }
            rd_kafka_poll(handle, 10)
        }
    }

    private func withKey<R>(_ key: ArraySlice<UInt8>?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
        guard let key else { return body(nil, 0) }
        return key.withUnsafeBytes { body($0.baseAddress, $0.count) }
    }

    /// Serves callbacks for up to `timeout` and returns the delivery reports since the last call.
    public func poll(timeout: Duration = .zero) -> [Delivery] {
        let ms = timeout.librdkafkaMilliseconds
        rd_kafka_poll(handle, ms)
        // The next reports go into an array made room for at once: grown by appending, it was
        // reallocated and copied a dozen times per batch.
        return reports.delivered.withLock { d in
            guard !d.isEmpty else { return [] }
            var taken: [Delivery] = []
            swap(&taken, &d)
            d.reserveCapacity(max(taken.count, 1024))
            return taken
        }
    }

    /// Messages queued or in flight (not yet acknowledged).
    public var outstanding: Int { Int(rd_kafka_outq_len(handle)) }

    /// Waits until every queued message is acknowledged or `timeout` passes.
    public func flush(timeout: Duration) -> Bool {
        let ms = timeout.librdkafkaMilliseconds
        return rd_kafka_flush(handle, ms) == RD_KAFKA_RESP_ERR_NO_ERROR
    }
}
