import Yams

/// How a CSV file's columns map onto canonical transaction fields.
///
/// A YAML file whose keys are canonical field names and whose values are column names, plus an
/// optional `timestamp_format: iso8601 | epoch_ms | epoch_s` (default `iso8601`):
///
/// ```yaml
/// id: tx_id
/// timestamp: event_time
/// timestamp_format: epoch_s
/// amount: amt
/// card_id: pan_token
/// ```
public struct CSVMapping: Sendable, Hashable {
    public enum TimestampFormat: String, Sendable, Hashable { case iso8601, epochMillis = "epoch_ms", epochSeconds = "epoch_s" }

    /// Canonical field → column name.
    public var columns: [TransactionField: String]
    public var timestampFormat: TimestampFormat

    public init(columns: [TransactionField: String], timestampFormat: TimestampFormat = .iso8601) {
        self.columns = columns
        self.timestampFormat = timestampFormat
    }

    /// Every canonical field read from the column of the same name.
    public static let identity = CSVMapping(
        columns: Dictionary(uniqueKeysWithValues: TransactionField.allCases.map { ($0, $0.rawValue) }))

    public static func load(path: String) throws(ConfigurationError) -> CSVMapping {
        let text = try TextFile.read(path)
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String? = nil) throws(ConfigurationError) -> CSVMapping {
        let root = try YAMLSupport.compose(text, file: file)
        guard let map = root.mapping else {
            throw ConfigurationError(file: file, line: root.mark?.line, message: "a mapping file is a YAML mapping of field: column")
        }
        var columns: [TransactionField: String] = [:]
        var format = TimestampFormat.iso8601
        for (k, v) in map {
            guard let key = k.string, let value = v.string else {
                throw ConfigurationError(file: file, line: k.mark?.line, message: "keys and values must be strings")
            }
            if key == "timestamp_format" {
                guard let f = TimestampFormat(rawValue: value) else {
                    throw ConfigurationError(file: file, line: v.mark?.line, message: "timestamp_format must be iso8601, epoch_ms or epoch_s, not '\(value)'")
                }
                format = f
                continue
            }
            guard let field = TransactionField(rawValue: key) else {
                let known = TransactionField.allCases.map(\.rawValue).joined(separator: ", ")
                throw ConfigurationError(file: file, line: k.mark?.line, message: "unknown field '\(key)' (known: \(known), timestamp_format)")
            }
            columns[field] = value
        }
        for required in [TransactionField.id, .timestamp, .amount] where columns[required] == nil {
            throw ConfigurationError(file: file, line: nil, message: "mapping has no column for required field '\(required.rawValue)'")
        }
        return CSVMapping(columns: columns, timestampFormat: format)
    }
}

/// Reads transactions from CSV (RFC 4180: quoted fields, doubled quotes, CRLF or LF) through a
/// ``CSVMapping``, with the same validation as the JSON decoder.
public struct CSVTransactionReader: Sendable {
    public let mapping: CSVMapping
    public let limits: DecoderLimits
    /// For each canonical field, the index of its column in the header.
    private let index: [(TransactionField, Int)]

    /// - Parameter header: the file's first line.
    public init(header: String, mapping: CSVMapping, limits: DecoderLimits = DecoderLimits()) throws(ConfigurationError) {
        self.mapping = mapping
        self.limits = limits
        let names = CSVTransactionReader.split(header)
        var index: [(TransactionField, Int)] = []
        for (field, column) in mapping.columns.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            guard let i = names.firstIndex(of: column) else {
                if [.id, .timestamp, .amount].contains(field) {
                    throw ConfigurationError(file: nil, line: 1, message: "CSV header has no column '\(column)' for required field '\(field.rawValue)'")
                }
                continue  // optional field absent from this file: missing values
            }
            index.append((field, i))
        }
        self.index = index
    }

    public func decode(line: String) throws(TransactionDecodingError) -> Transaction {
        guard line.utf8.count <= limits.maxBytes else {
            throw TransactionDecodingError(problems: [DecodeProblem(field: nil, value: nil, reason: "row larger than \(limits.maxBytes) bytes")])
        }
        let cells = CSVTransactionReader.split(line)
        var assembler = TransactionAssembler(limits: limits)
        for (field, i) in index {
            let cell = i < cells.count ? cells[i] : ""
            let value: JSONValue
            if cell.isEmpty {
                value = .null
            } else {
                switch field.kind {
                case .string: value = .string(cell)
                case .number, .label: value = Double(cell).map { .number($0, text: cell) } ?? .string(cell)
                case .timestamp:
                    value = mapping.timestampFormat == .iso8601 ? .string(cell) : (Double(cell).map { .number($0, text: cell) } ?? .string(cell))
                }
            }
            assembler.set(field, value, timestampScale: mapping.timestampFormat == .epochSeconds ? 1000 : 1)
        }
        guard let tx = assembler.finish() else { throw TransactionDecodingError(problems: assembler.problems) }
        return tx
    }

    /// Splits one CSV record into cells.
    static func split(_ line: String) -> [String] {
        var cells: [String] = []
        var cell: [UInt8] = []
        var quoted = false
        var utf8 = Array(line.utf8)
        if utf8.last == 13 { utf8.removeLast() }
        var i = 0
        while i < utf8.count {
            let c = utf8[i]
            if quoted {
                if c == 34 {
                    if i + 1 < utf8.count, utf8[i + 1] == 34 {
                        cell.append(34)
                        i += 1
                    } else {
                        quoted = false
                    }
                } else {
                    cell.append(c)
                }
            } else if c == 34 && cell.isEmpty {
                quoted = true
            } else if c == 44 {
                cells.append(String(decoding: cell, as: UTF8.self))
                cell.removeAll(keepingCapacity: true)
            } else {
                cell.append(c)
            }
            i += 1
        }
        cells.append(String(decoding: cell, as: UTF8.self))
        return cells
    }
}
