import CRdKafka

/// A librdkafka error: its code and text.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var message: String

    public init(code: Int32 = -1, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A local timeout (`RD_KAFKA_RESP_ERR__TIMED_OUT`): the broker did not answer in time.
    public var isTimeout: Bool { code == RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue }

    init(_ err: rd_kafka_resp_err_t, _ context: String) {
        code = err.rawValue
        message = "\(context): \(String(cString: rd_kafka_err2str(err)))"
    }

    public var description: String { message }
}

/// librdkafka properties, passed through as they are (`bootstrap.servers`, `security.protocol`,
/// `sasl.*`, `ssl.*`, …), so SASL, TLS and real clusters work without code changes.
public typealias KafkaProperties = [String: String]

/// One consumed message, copied out of librdkafka.
///
/// Its key and value are slices of one buffer the batch it came in shares: consuming a batch
/// allocates once for their bytes, not twice per message.
public struct KafkaMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: ArraySlice<UInt8>?
    public var value: ArraySlice<UInt8>
    /// Message timestamp (ms since the epoch), when the broker reports one.
    public var timestamp: Int64?
    public var headers: [KafkaHeader]

    public init(topic: String, partition: Int32, offset: Int64, key: ArraySlice<UInt8>?, value: ArraySlice<UInt8>, timestamp: Int64?, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers
    }

    /// The last header named `name`, as text.
    public func header(_ name: String) -> String? {
        headers.last { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }
}

public struct KafkaHeader: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]
    public init(_ name: String, _ value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// A topic partition, with an offset where one is meant.
public struct TopicPartition: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }
}

/// A message to publish.
///
/// Its bytes are slices, so the messages of a batch can share one buffer for their keys, values
/// and header values, and one array for their headers: publishing a batch then allocates per
/// batch, not per message (the producer copies the bytes).
public struct OutgoingMessage: Sendable {
    public var topic: String
    public var key: ArraySlice<UInt8>?
    public var value: ArraySlice<UInt8>
    public var headers: ArraySlice<OutgoingHeader>

    /// A message whose bytes and headers are slices of buffers its batch shares.
    public init(topic: String, key: ArraySlice<UInt8>?, value: ArraySlice<UInt8>, headers: ArraySlice<OutgoingHeader>) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
    }

    public init(topic: String, key: [UInt8]?, value: ArraySlice<UInt8>, headers: [(String, [UInt8])] = []) {
        self.init(topic: topic, key: key?[...], value: value, headers: headers.map { OutgoingHeader($0.0, $0.1[...]) }[...])
    }

    public init(topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])] = []) {
        self.init(topic: topic, key: key, value: value[...], headers: headers)
    }
}

/// A header of an ``OutgoingMessage``: its value a slice of a buffer the batch may share.
public struct OutgoingHeader: Sendable {
    public var name: String
    public var value: ArraySlice<UInt8>
    public init(_ name: String, _ value: ArraySlice<UInt8>) {
        self.name = name
        self.value = value
    }
}

enum KafkaConf {
    /// The NUL-terminated text librdkafka wrote into `buffer`.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A new `rd_kafka_conf_t` with `properties` set; the caller owns it until `rd_kafka_new`.
    static func make(_ properties: KafkaProperties) throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errstr = [CChar](repeating: 0, count: 512)
        for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, name, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError("Kafka property '\(name)': \(text(errstr))")
            }
        }
        return conf
    }

    static func handle(_ type: rd_kafka_type_t, _ conf: OpaquePointer) throws(KafkaError) -> OpaquePointer {
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("cannot create Kafka client: \(text(errstr))")
        }
        return rk
    }
}

extension Array where Element == TopicPartition {
    /// A new `rd_kafka_topic_partition_list_t`; offsets from `offsets` where given.
    func cList(offsets: [Int64]? = nil) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(count))!
        for (i, tp) in enumerated() {
            let p = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            if let offsets { p.pointee.offset = offsets[i] }
        }
        return list
    }

    init(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?) {
        self = []
        guard let list else { return }
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            append(TopicPartition(String(cString: e.topic), e.partition))
        }
    }
}

/// librdkafka's own version string, for logs and `--version`.
public var librdkafkaVersion: String { String(cString: rd_kafka_version_str()) }

extension Duration {
    /// Whole milliseconds, as librdkafka's timeouts take them.
    var librdkafkaMilliseconds: Int32 {
        Int32(clamping: components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
