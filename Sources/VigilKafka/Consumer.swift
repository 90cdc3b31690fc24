import CRdKafka
import Synchronization

/// A partition assignment change, delivered on the polling thread inside ``KafkaConsumer/poll(max:timeout:)``.
public enum Rebalance: Sendable {
    case assigned([TopicPartition])
    /// About to lose these partitions: finish and commit what was consumed from them now.
    case revoked([TopicPartition])
}

/// A consumer-group member over librdkafka, with manual offset commits.
///
/// Not thread-safe: one thread polls, commits and pauses (the daemon's pipeline thread). Offsets
/// are never committed automatically; the owner commits what it has finished.
public final class KafkaConsumer: @unchecked Sendable {
    final class Callbacks {
        let onRebalance: (Rebalance) -> Void
        let onError: (KafkaError) -> Void
        init(onRebalance: @escaping (Rebalance) -> Void, onError: @escaping (KafkaError) -> Void) {
            self.onRebalance = onRebalance
            self.onError = onError
        }
    }

    let handle: OpaquePointer
    let callbacks: Callbacks
    let queue: OpaquePointer
    public let topics: [String]
    /// Whether ``poll(max:timeout:)`` copies each message's headers (librdkafka parses them on
    /// request, allocating); off for a consumer that never reads them.
    public let readsHeaders: Bool
    private var closed = false
    /// A close ran out of time (see ``close(timeout:)``).
    private var abandoned = false

    /// - Parameters:
    ///   - properties: passed through; `group.id` and `bootstrap.servers` are required.
    ///     `enable.auto.commit` and `enable.auto.offset.store` are forced off.
    ///   - readsHeaders: whether messages come with their headers.
    ///   - onRebalance: called on the polling thread before partitions are revoked and after they
    ///     are assigned.
    public init(
        properties: KafkaProperties, topics: [String], readsHeaders: Bool = true,
        onRebalance: @escaping (Rebalance) -> Void = { _ in }, onError: @escaping (KafkaError) -> Void = { _ in }
    ) throws(KafkaError) {
        self.readsHeaders = readsHeaders
        guard properties["group.id"] != nil else { throw KafkaError("consumer needs group.id") }
        var p = properties
        p["enable.auto.commit"] = "false"
        p["enable.auto.offset.store"] = "false"
        if p["auto.offset.reset"] == nil { p["auto.offset.reset"] = "earliest" }
        let conf = try KafkaConf.make(p)
        callbacks = Callbacks(onRebalance: onRebalance, onError: onError)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(callbacks).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            KafkaConsumer.rebalance(rk!, err, partitions, Unmanaged<KafkaConsumer.Callbacks>.fromOpaque(opaque!).takeUnretainedValue())
        }
        handle = try KafkaConf.handle(RD_KAFKA_CONSUMER, conf)
        rd_kafka_poll_set_consumer(handle)
        queue = rd_kafka_queue_get_consumer(handle)
        self.topics = topics
        let list = topics.map { TopicPartition($0, -1) }.cList()
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_queue_destroy(queue)
            rd_kafka_destroy(handle)
            throw KafkaError(err, "subscribe \(topics)")
        }
    }

    /// Takes or gives up `partitions` as the group decided, telling the owner (after taking them,
    /// before giving them up).
    static func rebalance(
        _ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
        _ callbacks: Callbacks
    ) {
        let list = [TopicPartition](partitions)
        if err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            rd_kafka_assign(rk, partitions)
            callbacks.onRebalance(.assigned(list))
        } else {
            callbacks.onRebalance(.revoked(list))
            rd_kafka_assign(rk, nil)
        }
    }

    deinit {
        close()
        rd_kafka_queue_destroy(queue)
        // After a close that ran out of time, librdkafka's own close may still be waiting for the
        // broker, and destroying the handle would join its threads without a limit (measured:
        // minutes, even with RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE). Such a handle is left to the
        // process's exit; the owner is shutting down.
        if isClosed { rd_kafka_destroy(handle) }
    }

    /// Up to `max` messages: waits up to `timeout` for the first, then takes what is already
    /// fetched without waiting, so a batch is whatever has arrived (small when idle, full under load).
    public func poll(max: Int, timeout: Duration) -> [KafkaMessage] {
        var taken: [UnsafeMutablePointer<rd_kafka_message_t>] = []
        defer { for m in taken { rd_kafka_message_destroy(m) } }
        var wait = timeout.librdkafkaMilliseconds
        var size = 0
        while taken.count < max, let m = rd_kafka_consumer_poll(handle, wait) {
            wait = 0
            let err = m.pointee.err
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                rd_kafka_message_destroy(m)
                if err != RD_KAFKA_RESP_ERR__PARTITION_EOF { callbacks.onError(KafkaError(err, "consume")) }
                continue
            }
            if taken.isEmpty { taken.reserveCapacity(max) }
            taken.append(m)
            size += m.pointee.key_len + m.pointee.len
        }
        guard !taken.isEmpty else { return [] }
        // Every key and value copied into one buffer, then handed out as slices of it.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        for m in taken {
            if let key = m.pointee.key { bytes.append(contentsOf: UnsafeRawBufferPointer(start: key, count: m.pointee.key_len)) }
            if let value = m.pointee.payload { bytes.append(contentsOf: UnsafeRawBufferPointer(start: value, count: m.pointee.len)) }
        }
        var out: [KafkaMessage] = []
        out.reserveCapacity(taken.count)
        // A batch's messages come from a topic or two: each topic's name is made into a `String`
        // once per call, not once per message.
        var lastTopic: (handle: OpaquePointer?, name: String) = (nil, "")
        var at = 0
        for m in taken {
            let msg = m.pointee
            var key: ArraySlice<UInt8>?
            if msg.key != nil {
                key = bytes[at..<(at + msg.key_len)]
                at += msg.key_len
            }
            let value = bytes[at..<(at + (msg.payload == nil ? 0 : msg.len))]
            at = value.endIndex
            var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let ts = rd_kafka_message_timestamp(m, &type)
            if msg.rkt != lastTopic.handle { lastTopic = (msg.rkt, String(cString: rd_kafka_topic_name(msg.rkt))) }
            out.append(KafkaMessage(
                topic: lastTopic.name, partition: msg.partition, offset: msg.offset, key: key, value: value,
                timestamp: type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts, headers: readsHeaders ? Self.headers(of: m) : []))
        }
        return out
    }

    /// `m`'s headers, copied (librdkafka parses them on request).
    private static func headers(of m: UnsafeMutablePointer<rd_kafka_message_t>) -> [KafkaHeader] {
        var headers: [KafkaHeader] = []
        var hdrs: OpaquePointer?
        guard rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
        var i = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            if let name { headers.append(KafkaHeader(String(cString: name), value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? [])) }
            i += 1
        }
        return headers
    }

    /// Commits `offsets` (the next offset to read, per partition). `wait: nil` returns at once;
    /// a failed asynchronous commit is reported through `onError` and the next commit covers it.
    /// With a duration, waits that long at most for the broker's answer (with no coordinator,
    /// librdkafka's own synchronous commit waits for one without a limit) and throws
    /// `RD_KAFKA_RESP_ERR__TIMED_OUT` past it.
    public func commit(_ offsets: [TopicPartition: Int64], wait: Duration?) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let keys = Array(offsets.keys)
        let list = keys.cList(offsets: keys.map { offsets[$0]! })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard let wait else {
            let err = rd_kafka_commit(handle, list, 1)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "commit") }
            return
        }
        // The answer comes back on a queue of its own, as an event.
        let replies = rd_kafka_queue_new(handle)
        defer { rd_kafka_queue_destroy(replies) }
        let err = rd_kafka_commit_queue(handle, list, replies, nil, nil)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "commit") }
        guard let event = rd_kafka_queue_poll(replies, wait.librdkafkaMilliseconds) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, "commit")
        }
        defer { rd_kafka_event_destroy(event) }
        let answer = rd_kafka_event_error(event)
        if answer != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(answer, "commit") }
    }

    /// The partitions currently assigned to this member.
    public var assignment: [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return [TopicPartition](list)
    }

    /// Stops fetching from every assigned partition (backpressure); ``resume()`` restarts from
    /// the position consumed so far.
    public func pause() { setPaused(true) }
    public func resume() { setPaused(false) }

    private func setPaused(_ paused: Bool) {
        let list = assignment.cList()
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = paused ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
    }

    /// Messages not yet consumed on the assigned partitions, from the high watermarks librdkafka
    /// last saw (no broker round trip).
    public func lag() -> Int64 {
        let parts = assignment
        guard !parts.isEmpty else { return 0 }
        let list = parts.cList()
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard rd_kafka_position(handle, list) == RD_KAFKA_RESP_ERR_NO_ERROR else { return 0 }
        var total: Int64 = 0
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            var low: Int64 = -1
            var high: Int64 = -1
            guard rd_kafka_get_watermark_offsets(handle, e.topic, e.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  high >= 0 else { continue }
            let position = e.offset >= 0 ? e.offset : low
            if position >= 0 { total += max(0, high - position) }
        }
        return total
    }

    /// Whether the consumer has left the group and closed (also after ``close(timeout:)`` gave
    /// up, once the broker answered).
    public var isClosed: Bool { closed && (!abandoned || rd_kafka_consumer_closed(handle) != 0) }

    /// Leaves the group (revoking partitions through `onRebalance`) and closes, waiting up to
    /// `timeout`. Returns false when that ran out (a broker that does not answer; the group
    /// expires the member itself after `session.timeout.ms`): the handle is then never destroyed,
    /// so call it when the process is about to exit. Idempotent.
    @discardableResult
    public func close(timeout: Duration = .seconds(30)) -> Bool {
        guard !closed else { return !abandoned }
        closed = true
        // Served here, on the caller's thread, as events: the revocation goes through the same
        // rebalance path as ever, and whatever else librdkafka forwards here is dropped (served
        // with `rd_kafka_queue_poll_callback` instead, the process aborted when another member
        // was taking over: `twoDaemonsTakeOver`).
        let events = rd_kafka_queue_new(handle)
        defer { rd_kafka_queue_destroy(events) }
        if let error = rd_kafka_consumer_close_queue(handle, events) {
            callbacks.onError(KafkaError(rd_kafka_error_code(error), "close"))
            rd_kafka_error_destroy(error)
        }
        let deadline = ContinuousClock.now + timeout
        while rd_kafka_consumer_closed(handle) == 0 {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                abandoned = true
                return false
            }
            guard let event = rd_kafka_queue_poll(events, min(left, .milliseconds(100)).librdkafkaMilliseconds) else { continue }
            if rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE {
                Self.rebalance(handle, rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event), callbacks)
            }
            rd_kafka_event_destroy(event)
        }
        return true
    }
}
