import VigilCore
import VigilExpression

/// The ordered feature names a spec produces, which is the model's column order.
public struct FeatureSchema: Sendable, Hashable {
    public let names: [String]
    public init(names: [String]) { self.names = names }

    public var count: Int { names.count }

    public func index(of name: String) -> Int? { names.firstIndex(of: name) }

    /// A stable fingerprint of the names and their order (SipHash with a fixed key, 16 hex digits).
    public var hash: String {
        KeyedHasher.hex(KeyedHasher.insecureDevelopmentKey.hash(names.joined(separator: "\n")))
    }
}

/// A ``FeatureSpec`` compiled for evaluation: column positions, window lanes and compiled
/// expressions. Built once at load time.
public final class FeaturePlan: Sendable {
    public let spec: FeatureSpec
    public let schema: FeatureSchema
    /// One per entity of the spec, in spec order.
    public let entities: [EntityPlan]
    /// ``entities`` unretained, for the store's walk to borrow (the plan keeps them alive).
    let unretainedEntities: [Unmanaged<EntityPlan>]
    let fieldColumns: [(TransactionField, Int)]
    let calendarColumns: [(FeatureSpec.CalendarFeature, Int)]
    /// Writes every derived feature into a row (`row`, the one `RowContext` reads), in the spec's
    /// order, so a derived feature may read an earlier one; nil when there are none. One call of
    /// nested captured closures: calling each out of an array retained and released it per row.
    let writeDerived: (@Sendable (RowContext, UnsafeMutablePointer<Float>) -> Void)?
    /// The longest window any entity keeps, which bounds how long a transaction id is remembered.
    public let retention: Int64
    /// What ``FeatureEngine/events(for:)`` reads per transaction, laid out so it retains nothing
    /// per transaction (iterating `entities` retained each entity and its arrays, and calling a
    /// filter out of an array retained the filter): each entity's key field, every entity's
    /// tracked fields one after the other, and one call that writes each entity's filter bits.
    let keyFields: [TransactionField]
    let trackedFields: [TransactionField]
    let filterBits: @Sendable (RowContext, UnsafeMutablePointer<UInt8>) -> Void

    public init(spec: FeatureSpec) throws(ConfigurationError) {
        self.spec = spec
        var names: [String] = []
        var fieldColumns: [(TransactionField, Int)] = []
        for f in spec.fields {
            fieldColumns.append((f, names.count))
            names.append(f.rawValue)
        }
        var calendarColumns: [(FeatureSpec.CalendarFeature, Int)] = []
        for c in spec.calendar {
            calendarColumns.append((c, names.count))
            names.append(c.featureName)
        }
        var entities: [EntityPlan] = []
        for e in spec.entities {
            entities.append(try EntityPlan(entity: e, spec: spec, names: &names))
        }
        var seen = Set<String>()
        for n in names where !seen.insert(n).inserted {
            throw ConfigurationError(file: nil, line: nil, message: "feature '\(n)' is defined twice")
        }
        // Derived features: expressions over transaction fields and earlier features.
        var derived: [(Int, @Sendable (borrowing RowContext) -> Double)] = []
        for d in spec.derived {
            guard seen.insert(d.name).inserted else {
                throw ConfigurationError(file: nil, line: d.line, message: "feature '\(d.name)' is defined twice")
            }
            let scope = RowContext.scope(features: names)
            do {
                let f = try Expression.parse(d.expression).compileNumber(in: scope, for: RowContext.self)
                derived.append((names.count, f))
            } catch {
                throw ConfigurationError(file: nil, line: d.line, message: "derived feature '\(d.name)': \(error)")
            }
            names.append(d.name)
        }
        self.schema = FeatureSchema(names: names)
        self.entities = entities
        unretainedEntities = entities.map { Unmanaged.passUnretained($0) }
        self.fieldColumns = fieldColumns
        self.calendarColumns = calendarColumns
        var writeDerived: (@Sendable (RowContext, UnsafeMutablePointer<Float>) -> Void)?
        for (column, f) in derived {
            let before = writeDerived
            writeDerived = { context, row in
                before?(context, row)
                row[column] = Float(f(context))
            }
        }
        self.writeDerived = writeDerived
        self.retention = entities.map(\.retention).max() ?? 0
        keyFields = entities.map(\.field)
        trackedFields = entities.flatMap(\.tracked)
        // Each filter captured by the next call (nested calls of captured closures retain none).
        let entityCount = entities.count
        var filterBits: @Sendable (RowContext, UnsafeMutablePointer<UInt8>) -> Void = { _, bits in
            bits.initialize(repeating: 0, count: entityCount)
        }
        for (e, entity) in entities.enumerated() {
            for (k, filter) in entity.filters.enumerated() {
                let before = filterBits
                filterBits = { context, bits in
                    before(context, bits)
                    if filter(context) { bits[e] |= 1 << UInt8(k) }
                }
            }
        }
        self.filterBits = filterBits
    }

    /// The number of columns the store writes (all entity features).
    public var storeColumns: [Int] { entities.flatMap { $0.outputs.map(\.column) } }
}

/// How one entity's features are computed from its events.
///
/// Every window the entity uses is a lane (at most 8): ``EntityState`` keeps each lane's window
/// up to date as events enter and leave it; the recomputing reference kernel tests each event
/// against all lanes of a `SIMD8<Double>` at once.
public final class EntityPlan: Sendable {
    public let name: String
    public let field: TransactionField
    /// Window lengths in ms, one per lane; unused lanes are -1 (never match).
    public let lanes: SIMD8<Double>
    public let laneCount: Int
    /// Filters, compiled over the transaction; bit `i` of an event's filter mask is filter `i`.
    /// Compiled over a ``RowContext`` with no row, which reads the transaction in place.
    let filters: [@Sendable (RowContext) -> Bool]
    public let filterCount: Int
    /// Fields whose hashed values are kept per event (distinct counts, first-seen, home country).
    public let tracked: [TransactionField]
    let outputs: [Output]
    /// Distinct-count requests: (tracked index, lane).
    let distinct: [(tracked: Int, lane: Int)]
    /// The lane of the profile history, if the entity has a profile.
    let historyLane: Int?
    let firstSeen: [Int]
    let countryTracked: Int?
    /// The cells (``cell(_:_:)``) whose maximum is an output: only these keep a sliding maximum.
    let maxCells: [Int]
    /// Each lane's length in ms (``lanes`` as integers).
    let spans: [Int64]
    /// The lane of each sliding maximum (`maxCells[k] % laneCount`).
    let maxLane: [Int]
    /// The cells an event entering or leaving lane `l` updates, at
    /// `laneCells[laneCellStart[l]..<laneCellStart[l + 1]]`: only those an output reads, where
    /// every filter group of every lane used to be updated (a card's 18 cells for its 9 read).
    let laneCells: [LaneCell]
    let laneCellStart: [Int]

    /// A cell a lane's events update (see ``laneCells``).
    struct LaneCell: Sendable {
        let cell: Int
        /// The filter bit an event needs to count in the cell; 0 for the unfiltered group.
        let filterMask: UInt8
        /// The cell's sliding maximum in ``maxCells``, or -1.
        let maxSlot: Int
    }
    /// How long events are kept: the longest lane.
    public let retention: Int64

    enum Kind: Sendable {
        /// `filter` is 0 for unfiltered, i + 1 for filter i.
        case count(filter: Int, lane: Int)
        case sum(filter: Int, lane: Int)
        case mean(filter: Int, lane: Int)
        case std(filter: Int, lane: Int)
        case max(filter: Int, lane: Int)
        case distinct(request: Int)
        case zscore, ratio, secondsSinceLast, distance, speed, crossBorder
        case newValue(tracked: Int)
        case fraudRate(lane: Int)
        /// Over [t − W − d, t − d): lane `long` is W + d, lane `short` is d.
        case delayedFraudRate(long: Int, short: Int)
        case delayedFrauds(long: Int, short: Int)
    }

    /// Where filter group `g` (0 unfiltered, i + 1 for filter i) and lane `l` live in the
    /// per-cell arrays of ``WindowAggregates``.
    @inline(__always)
    public func cell(_ g: Int, _ l: Int) -> Int { g * laneCount + l }

    public var cellCount: Int { (filterCount + 1) * laneCount }

    struct Output: Sendable {
        let column: Int
        let kind: Kind
    }

    init(entity: FeatureSpec.Entity, spec: FeatureSpec, names: inout [String]) throws(ConfigurationError) {
        name = entity.name
        field = entity.field
        var windows: [Int64] = []
        func lane(_ w: Int64, line: Int?) throws(ConfigurationError) -> Int {
            if let i = windows.firstIndex(of: w) { return i }
            guard windows.count < 8 else {
                throw ConfigurationError(file: nil, line: line, message: "entity '\(entity.name)' uses more than 8 distinct windows")
            }
            windows.append(w)
            return windows.count - 1
        }
        var tracked: [TransactionField] = []
        func track(_ f: TransactionField) -> Int {
            if let i = tracked.firstIndex(of: f) { return i }
            tracked.append(f)
            return tracked.count - 1
        }
        var filters: [@Sendable (RowContext) -> Bool] = []
        var outputs: [Output] = []
        var distinct: [(Int, Int)] = []
        for agg in spec.aggregates where agg.entity == entity.name {
            var filterID = 0
            if let text = agg.filter {
                guard filters.count < 8 else {
                    throw ConfigurationError(file: nil, line: agg.line, message: "entity '\(entity.name)' has more than 8 filters")
                }
                do {
                    filters.append(try Expression.parse(text).compilePredicate(in: RowContext.scope(features: []), for: RowContext.self))
                } catch {
                    throw ConfigurationError(file: nil, line: agg.line, message: "filter '\(text)': \(error)")
                }
                filterID = filters.count
            }
            let prefix = agg.name.map { "\(entity.name)_\($0)" } ?? entity.name
            for w in agg.windows {
                let l = try lane(w, line: agg.line)
                for op in agg.ops {
                    let kind: Kind
                    switch op {
                    case .count: kind = .count(filter: filterID, lane: l)
                    case .sum: kind = .sum(filter: filterID, lane: l)
                    case .mean: kind = .mean(filter: filterID, lane: l)
                    case .std: kind = .std(filter: filterID, lane: l)
                    case .max: kind = .max(filter: filterID, lane: l)
                    case .distinct(let f):
                        guard filterID == 0 else {
                            throw ConfigurationError(file: nil, line: agg.line, message: "distinct cannot be combined with a filter")
                        }
                        distinct.append((track(f), l))
                        kind = .distinct(request: distinct.count - 1)
                    }
                    outputs.append(Output(column: names.count, kind: kind))
                    names.append("\(prefix)_\(op.label)_\(DurationText.format(w))")
                }
            }
        }
        var historyLane: Int?
        var firstSeen: [Int] = []
        var countryTracked: Int?
        for p in spec.profiles where p.entity == entity.name {
            guard historyLane == nil else {
                throw ConfigurationError(file: nil, line: nil, message: "entity '\(entity.name)' has more than one profile")
            }
            historyLane = try lane(p.history, line: nil)
            for f in p.features {
                let kind: Kind
                switch f {
                case .amountZScore: kind = .zscore
                case .amountRatio: kind = .ratio
                case .secondsSinceLast: kind = .secondsSinceLast
                case .distanceKm: kind = .distance
                case .speedKmh: kind = .speed
                case .crossBorder:
                    countryTracked = track(.country)
                    kind = .crossBorder
                }
                outputs.append(Output(column: names.count, kind: kind))
                names.append("\(entity.name)_\(f.rawValue)")
            }
            for f in p.firstSeen {
                let t = track(f)
                firstSeen.append(t)
                outputs.append(Output(column: names.count, kind: .newValue(tracked: t)))
                names.append("\(entity.name)_new_\(f.rawValue)")
            }
        }
        for r in spec.risk where r.entity == entity.name {
            for w in r.windows {
                if r.delay == 0 {
                    outputs.append(Output(column: names.count, kind: .fraudRate(lane: try lane(w, line: nil))))
                    names.append("\(entity.name)_fraud_rate_\(DurationText.format(w))")
                    continue
                }
                // [t − W − d, t − d) is the W + d window minus the d window: two ordinary lanes,
                // so the incremental state, the reference kernel and both stores need nothing new.
                let long = try lane(w + r.delay, line: nil), short = try lane(r.delay, line: nil)
                let suffix = "\(DurationText.format(w))_lag_\(DurationText.format(r.delay))"
                outputs.append(Output(column: names.count, kind: .delayedFraudRate(long: long, short: short)))
                names.append("\(entity.name)_fraud_rate_\(suffix)")
                outputs.append(Output(column: names.count, kind: .delayedFrauds(long: long, short: short)))
                names.append("\(entity.name)_frauds_\(suffix)")
            }
        }
        var lanes = SIMD8<Double>(repeating: -1)
        for (i, w) in windows.enumerated() { lanes[i] = Double(w) }
        self.lanes = lanes
        self.laneCount = windows.count
        self.filters = filters
        self.filterCount = filters.count
        self.tracked = tracked
        self.outputs = outputs
        self.distinct = distinct
        self.historyLane = historyLane
        self.firstSeen = firstSeen
        self.countryTracked = countryTracked
        let maxCells = Array(Set(outputs.compactMap { o -> Int? in
            if case .max(let g, let l) = o.kind { return g * windows.count + l }
            return nil
        })).sorted()
        var maxSlot = Array(repeating: -1, count: (filters.count + 1) * windows.count)
        for (k, c) in maxCells.enumerated() { maxSlot[c] = k }
        self.maxCells = maxCells
        spans = windows
        maxLane = maxCells.map { $0 % windows.count }
        // The cells outputs read: aggregates, the history lane's statistics, fraud counts.
        var read = Set<Int>()
        for o in outputs {
            switch o.kind {
            case .count(let g, let l), .sum(let g, let l), .mean(let g, let l), .std(let g, let l), .max(let g, let l):
                read.insert(g * windows.count + l)
            case .fraudRate(let l): read.insert(l)
            case .delayedFraudRate(let long, let short), .delayedFrauds(let long, let short): read.formUnion([long, short])
            case .distinct, .zscore, .ratio, .secondsSinceLast, .distance, .speed, .crossBorder, .newValue: break
            }
        }
        if let h = historyLane { read.insert(h) }
        var laneCells: [LaneCell] = [], laneCellStart = [0]
        for l in windows.indices {
            for g in 0...filters.count where read.contains(g * windows.count + l) {
                let cell = g * windows.count + l
                laneCells.append(LaneCell(cell: cell, filterMask: g == 0 ? 0 : 1 << UInt8(g - 1), maxSlot: maxSlot[cell]))
            }
            laneCellStart.append(laneCells.count)
        }
        self.laneCells = laneCells
        self.laneCellStart = laneCellStart
        self.retention = windows.max() ?? 0
    }
}

/// What derived features and rules read: the transaction and its feature row.
/// Number slots ≥ 0 are feature columns; slots < 0 are transaction fields (-1 - field index).
public struct RowContext: ExpressionContext {
    /// The transaction, addressed in place: a context is made for one evaluation (like `row`),
    /// and holding the transaction by value copied it (a retain of each of its strings) per row.
    public let transaction: UnsafePointer<Transaction>
    public let row: UnsafeBufferPointer<Float>

    /// A context valid while `transaction` and `row` are.
    public init(transaction: UnsafePointer<Transaction>, row: UnsafeBufferPointer<Float>) {
        self.transaction = transaction
        self.row = row
    }

    /// Transaction fields plus the given feature names. A feature may shadow a field of the same name.
    public static func scope(features: [String]) -> Scope {
        var b: [String: Binding] = [:]
        for (i, f) in TransactionField.allCases.enumerated() {
            switch f.kind {
            case .number, .timestamp, .label: b[f.rawValue] = .number(slot: -1 - i)
            case .string: b[f.rawValue] = .string(slot: i)
            }
        }
        b.removeValue(forKey: TransactionField.label.rawValue)  // never visible to scoring
        for (i, n) in features.enumerated() { b[n] = .number(slot: i) }
        return Scope(b)
    }

    @inline(__always)
    public func number(_ slot: Int) -> Double {
        slot >= 0 ? Double(row[slot]) : Transaction.number(Transaction.allFields[-1 - slot], at: transaction)
    }
    public func string(_ slot: Int) -> String? { Transaction.string(Transaction.allFields[slot], at: transaction) }
    public func list(_ slot: Int, contains value: String) -> Bool { false }
    /// The field's bytes read in place for the set's filter first: most values are ruled out
    /// without retaining the string (see ``Transaction/withUTF8(_:at:_:)``).
    public func string(_ slot: Int, _ transform: LookupTransform, isIn set: StringSet) -> Bool {
        let field = Transaction.allFields[slot]
        if Transaction.withUTF8(field, at: transaction, { set.rulesOut($0, transform) }) == true { return false }
        guard let s = Transaction.string(field, at: transaction) else { return false }
        return set.contains(transform.apply(s))
    }
}
