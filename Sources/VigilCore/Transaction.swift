/// One payment transaction in Vigil's canonical form.
///
/// Produced by ``TransactionDecoder`` (JSON) or ``CSVTransactionReader`` and consumed by every stage.
/// Optional fields that are absent stay `nil`; features that need them become missing values (NaN).
///
/// - Important: `cardID`, `email` and `ip` hold raw, sensitive values. They never leave the process:
///   store keys use ``KeyedHasher`` and verdicts carry only the transaction id.
public struct Transaction: Sendable, Hashable {
    public var id: String
    /// Event time, milliseconds since the Unix epoch (UTC).
    public var timestamp: Int64
    /// Amount in major units of `currency` (≥ 0).
    public var amount: Double
    public var currency: String?
    public var cardID: String?
    public var customerID: String?
    public var merchantID: String?
    public var terminalID: String?
    public var deviceID: String?
    public var ip: String?
    public var email: String?
    public var country: String?
    public var mcc: String?
    public var channel: String?
    public var lat: Double?
    public var lon: Double?
    /// Ground truth (1 = fraud), used only for training and backtests; never read by the scorer.
    public var label: Int8?

    public init(
        id: String, timestamp: Int64, amount: Double, currency: String? = nil, cardID: String? = nil,
        customerID: String? = nil, merchantID: String? = nil, terminalID: String? = nil,
        deviceID: String? = nil, ip: String? = nil, email: String? = nil, country: String? = nil,
        mcc: String? = nil, channel: String? = nil, lat: Double? = nil, lon: Double? = nil,
        label: Int8? = nil
    ) {
        self.id = id
        self.timestamp = timestamp
        self.amount = amount
        self.currency = currency
        self.cardID = cardID
        self.customerID = customerID
        self.merchantID = merchantID
        self.terminalID = terminalID
        self.deviceID = deviceID
        self.ip = ip
        self.email = email
        self.country = country
        self.mcc = mcc
        self.channel = channel
        self.lat = lat
        self.lon = lon
        self.label = label
    }

    /// The value of a string-typed canonical field.
    @inlinable
    public func string(_ field: TransactionField) -> String? {
        withUnsafePointer(to: self) { Self.string(field, at: $0) }
    }

    /// The value of a string-typed canonical field of the transaction at `t`, read in place: only
    /// that field's string is retained, where calling ``string(_:)`` on `t.pointee` from another
    /// module copied the whole transaction (a retain and release of each of its strings).
    @inlinable
    public static func string(_ field: TransactionField, at t: UnsafePointer<Transaction>) -> String? {
        switch field {
        case .id: t.pointee.id
        case .currency: t.pointee.currency
        case .cardID: t.pointee.cardID
        case .customerID: t.pointee.customerID
        case .merchantID: t.pointee.merchantID
        case .terminalID: t.pointee.terminalID
        case .deviceID: t.pointee.deviceID
        case .ip: t.pointee.ip
        case .email: t.pointee.email
        case .country: t.pointee.country
        case .mcc: t.pointee.mcc
        case .channel: t.pointee.channel
        case .timestamp, .amount, .lat, .lon, .label: nil
        }
    }

    /// `body` applied to the UTF-8 bytes of a string field of the transaction at `t`, read in
    /// place; nil when the field is absent, not a string, or not contiguous in memory (a bridged
    /// string). Inlined together with a `body` that only reads, it retains nothing, where
    /// ``string(_:at:)`` retains the field's string: an atomic operation that, on a string the
    /// features stage has long left, waits for its line and for every load before it.
    @inlinable @inline(__always)
    public static func withUTF8<R>(_ field: TransactionField, at t: UnsafePointer<Transaction>, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R? {
        let r: R?? =
            switch field {
            case .id: t.pointee.id.utf8.withContiguousStorageIfAvailable(body)
            case .currency: t.pointee.currency?.utf8.withContiguousStorageIfAvailable(body)
            case .cardID: t.pointee.cardID?.utf8.withContiguousStorageIfAvailable(body)
            case .customerID: t.pointee.customerID?.utf8.withContiguousStorageIfAvailable(body)
            case .merchantID: t.pointee.merchantID?.utf8.withContiguousStorageIfAvailable(body)
            case .terminalID: t.pointee.terminalID?.utf8.withContiguousStorageIfAvailable(body)
            case .deviceID: t.pointee.deviceID?.utf8.withContiguousStorageIfAvailable(body)
            case .ip: t.pointee.ip?.utf8.withContiguousStorageIfAvailable(body)
            case .email: t.pointee.email?.utf8.withContiguousStorageIfAvailable(body)
            case .country: t.pointee.country?.utf8.withContiguousStorageIfAvailable(body)
            case .mcc: t.pointee.mcc?.utf8.withContiguousStorageIfAvailable(body)
            case .channel: t.pointee.channel?.utf8.withContiguousStorageIfAvailable(body)
            case .timestamp, .amount, .lat, .lon, .label: nil
            }
        return r ?? nil
    }

    /// The value of a numeric canonical field, NaN when absent.
    @inlinable
    public func number(_ field: TransactionField) -> Double {
        withUnsafePointer(to: self) { Self.number(field, at: $0) }
    }

    /// The value of a numeric canonical field of the transaction at `t`, read in place (see
    /// ``string(_:at:)``: calling ``number(_:)`` on `t.pointee` copied the transaction).
    @inlinable
    public static func number(_ field: TransactionField, at t: UnsafePointer<Transaction>) -> Double {
        switch field {
        case .timestamp: Double(t.pointee.timestamp)
        case .amount: t.pointee.amount
        case .lat: t.pointee.lat ?? .nan
        case .lon: t.pointee.lon ?? .nan
        case .label: t.pointee.label.map(Double.init) ?? .nan
        default: .nan
        }
    }
}

/// The canonical transaction fields, by their JSON names.
public enum TransactionField: String, CaseIterable, Sendable, Hashable {
    case id
    case timestamp
    case amount
    case currency
    case cardID = "card_id"
    case customerID = "customer_id"
    case merchantID = "merchant_id"
    case terminalID = "terminal_id"
    case deviceID = "device_id"
    case ip
    case email
    case country
    case mcc
    case channel
    case lat
    case lon
    case label

    public enum Kind: Sendable { case string, number, timestamp, label }

    /// The field's position in ``allCases``, without searching it.
    @inlinable
    public var ordinal: Int {
        switch self {
        case .id: 0
        case .timestamp: 1
        case .amount: 2
        case .currency: 3
        case .cardID: 4
        case .customerID: 5
        case .merchantID: 6
        case .terminalID: 7
        case .deviceID: 8
        case .ip: 9
        case .email: 10
        case .country: 11
        case .mcc: 12
        case .channel: 13
        case .lat: 14
        case .lon: 15
        case .label: 16
        }
    }

    public var kind: Kind {
        switch self {
        case .timestamp: .timestamp
        case .amount, .lat, .lon: .number
        case .label: .label
        default: .string
        }
    }

    /// Fields whose raw value is personal or card data and must be hashed before it leaves the process.
    public var isSensitive: Bool {
        switch self {
        case .cardID, .email, .ip, .customerID, .deviceID: true
        default: false
        }
    }
}

/// A fraud label for an earlier transaction (a chargeback, a confirmed review outcome).
public struct Label: Sendable, Hashable {
    public var transactionID: String
    public var isFraud: Bool
    public init(transactionID: String, isFraud: Bool) {
        self.transactionID = transactionID
        self.isFraud = isFraud
    }
}
