import VigilCore

/// Which canonical fields a data set carries: the share of rows with a value, and whether the
/// value varies (a field with one value everywhere tells a model nothing).
public struct FieldCoverage: Sendable, Hashable {
    public private(set) var rows = 0
    private var present: [TransactionField: Int] = [:]
    private var first: [TransactionField: String] = [:]
    private var varies: Set<TransactionField> = []

    /// A field counts as carried when at least this share of rows has it and it varies.
    public static let minimumShare = 0.1

    public init() {}

    public init(_ transactions: some Sequence<Transaction>) {
        for tx in transactions { add(tx) }
    }

    public mutating func add(_ tx: Transaction) {
        rows += 1
        for f in TransactionField.allCases {
            let value: String?
            switch f.kind {
            case .string: value = tx.string(f).flatMap { $0.isEmpty ? nil : $0 }
            case .number:
                let v = tx.number(f)
                value = v.isNaN ? nil : String(v)
            case .timestamp, .label: continue
            }
            guard let value else { continue }
            present[f, default: 0] += 1
            if let seen = first[f] {
                if seen != value { varies.insert(f) }
            } else {
                first[f] = value
            }
        }
    }

    /// Share of rows with a value for `field` (0 when there are no rows).
    public func share(_ field: TransactionField) -> Double {
        rows == 0 ? 0 : Double(present[field] ?? 0) / Double(rows)
    }

    public func carries(_ field: TransactionField) -> Bool {
        share(field) >= Self.minimumShare && varies.contains(field)
    }
}

extension FeatureSpec {
    /// An entity of this spec whose field most rows of a data set lack.
    public struct SparseEntity: Sendable, Hashable, CustomStringConvertible {
        public var entity: String
        public var field: TransactionField
        /// Share of rows without the field.
        public var missing: Double
        public var description: String {
            "entity '\(entity)' (\(field.rawValue)) is missing in \(Int((missing * 100).rounded()))% of rows"
        }
    }

    /// The entities whose field is missing in more than half of the rows: their features will
    /// be NaN there, which usually means the spec was written for other data.
    public func sparseEntities(in coverage: FieldCoverage) -> [SparseEntity] {
        entities.compactMap { e in
            let missing = 1 - coverage.share(e.field)
            return missing > 0.5 ? SparseEntity(entity: e.name, field: e.field, missing: missing) : nil
        }
    }

    /// How each identity field is used when a spec is derived from data.
    enum Role {
        /// Pays: card, customer, email. Velocity, amount profile, first-seen counterparts, risk.
        case payer
        /// Accepts: merchant, terminal. Volume, amount level, distinct payers, risk.
        case acceptor
        /// Links payers: device, IP. Volume, distinct payers, risk.
        case link
    }

    static let identities: [(name: String, field: TransactionField, role: Role)] = [
        ("card", .cardID, .payer), ("customer", .customerID, .payer), ("email", .email, .payer),
        ("merchant", .merchantID, .acceptor), ("terminal", .terminalID, .acceptor),
        ("device", .deviceID, .link), ("ip", .ip, .link),
    ]

    /// A spec fitted to the fields a data set carries (see `docs/features.md#derived-spec`):
    /// every identity field present gets the windows, profile and risk suited to its role, and
    /// absent fields produce no columns. Risk windows end `labelDelay` before the transaction.
    ///
    /// - Returns: the spec's YAML, which parses with ``parse(_:file:)``; a bundle stores it.
    public static func derivedYAML(for coverage: FieldCoverage, labelDelay: Int64) -> String {
        let present = identities.filter { coverage.carries($0.field) }
        let payer = present.first { $0.role == .payer }
        let acceptors = present.filter { $0.role == .acceptor }
        let links = present.filter { $0.role == .link }
        let located = coverage.carries(.lat) && coverage.carries(.lon)
        let delay = labelDelay > 0 ? "\n  delay: \(DurationText.format(labelDelay))" : ""

        var y = "# Derived by vigil train from the fields the training data carries:\n"
        y += "# " + TransactionField.allCases.filter { $0.kind == .string || $0.kind == .number }
            .map { "\($0.rawValue) \(Int((coverage.share($0) * 100).rounded()))%" }.joined(separator: ", ") + "\n"
        y += "version: 1\n"
        if !present.isEmpty {
            y += "entities:\n" + present.map { "  \($0.name): \($0.field.rawValue)\n" }.joined()
        }
        y += "fields: [amount]\ncalendar: [hour, weekday, night, weekend]\n"
        var aggregates: [String] = [], profiles: [String] = [], risk: [String] = []
        for e in present {
            switch e.role {
            case .payer:
                aggregates.append("- entity: \(e.name)\n  windows: [1h, 1d, 7d, 30d]\n  ops: [count, sum, mean, max]")
                var spread = ["std"]
                if e.name == payer?.name {
                    spread += (acceptors + links).map { "distinct(\($0.field.rawValue))" }
                    if coverage.carries(.country) { spread.append("distinct(country)") }
                }
                aggregates.append("- entity: \(e.name)\n  windows: [1d]\n  ops: [\(spread.joined(separator: ", "))]")
                var features = ["amount_zscore", "amount_ratio", "secs_since_last"]
                if located { features += ["distance_km", "speed_kmh"] }
                if coverage.carries(.country) { features.append("cross_border") }
                var p = "- entity: \(e.name)\n  history: 30d\n  features: [\(features.joined(separator: ", "))]"
                let counterparts = (acceptors + links.filter { $0.field == .deviceID }).map(\.field.rawValue)
                if !counterparts.isEmpty { p += "\n  first_seen: [\(counterparts.joined(separator: ", "))]" }
                profiles.append(p)
                risk.append("- entity: \(e.name)\n  windows: [1d, 7d, 30d]" + delay)
            case .acceptor:
                aggregates.append("- entity: \(e.name)\n  windows: [1h, 1d, 7d, 30d]\n  ops: [count, mean]")
                if let payer { aggregates.append("- entity: \(e.name)\n  windows: [1d]\n  ops: [distinct(\(payer.field.rawValue))]") }
                profiles.append("- entity: \(e.name)\n  history: 30d\n  features: [amount_zscore, amount_ratio]")
                risk.append("- entity: \(e.name)\n  windows: [1d, 7d, 30d]" + delay)
            case .link:
                var ops = ["count"]
                if let payer { ops.append("distinct(\(payer.field.rawValue))") }
                aggregates.append("- entity: \(e.name)\n  windows: [1h, 1d]\n  ops: [\(ops.joined(separator: ", "))]")
                risk.append("- entity: \(e.name)\n  windows: [30d]" + delay)
            }
        }
        func section(_ name: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            y += "\(name):\n" + items.map { "  " + $0.replacingOccurrences(of: "\n", with: "\n  ") + "\n" }.joined()
        }
        section("aggregates", aggregates)
        section("profiles", profiles)
        section("risk", risk)
        var derived: [String] = []
        if coverage.carries(.channel) { derived.append("- name: is_ecom\n  expr: channel == \"ecom\"") }
        if coverage.carries(.mcc) { derived.append("- name: mcc_code\n  expr: number(mcc)") }
        section("derived", derived)
        return y
    }
}
