import Foundation
import VigilCore

/// Card-present history of the sparse shape many teams have: a customer id, a terminal id, an
/// amount, a time and a fraud label, nothing else (`vigil simulate --shape pos`).
///
/// Customers and terminals sit on a 100 × 100 map; a customer buys at the terminals within a
/// radius, a few times a day, amounts around their own mean. Fraud comes in three kinds that
/// cluster the way real fraud does:
/// - **Unusual amounts**: any transaction above `amountThreshold`.
/// - **Compromised terminals** (a skimmer): each day a few terminals are compromised, and every
///   transaction there in the next `terminalDays` days is fraud.
/// - **Compromised cards**: each day a few customers' cards are compromised; for the next
///   `customerDays` days a share of their transactions are fraud, at `amountFactor` × the amount.
public struct PointOfSaleSimulator: Sendable {
    public struct Options: Sendable {
        public var customers = 5_000
        public var terminals = 10_000
        public var days = 60
        public var seed: UInt64 = 42
        /// Start of the first day, ms since the epoch.
        public var start: Int64 = 1_767_225_600_000
        public var radius = 5.0
        public var amountThreshold = 220.0
        public var terminalsCompromisedPerDay = 2.0
        public var terminalDays = 28
        public var customersCompromisedPerDay = 3.0
        public var customerDays = 14
        public var customerFraudShare = 1.0 / 3
        public var amountFactor = 5.0
        public init() {}
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    /// The stream in time order, labelled.
    public func generate(progress: (Double) -> Void = { _ in }) -> [Transaction] {
        let o = options
        var rng = SplitMix64(seed: o.seed)
        func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * rng.unit() }
        struct Customer { var x, y, mean, std, perDay: Double; var terminals: [Int] }
        let terminalXY = (0..<o.terminals).map { _ in (uniform(0, 100), uniform(0, 100)) }
        // Terminals bucketed by map cell, so finding those within the radius stays cheap.
        let cell = max(o.radius, 1)
        let side = Int((100 / cell).rounded(.up)) + 1
        var grid = [[Int]](repeating: [], count: side * side)
        for (i, p) in terminalXY.enumerated() { grid[Int(p.1 / cell) * side + Int(p.0 / cell)].append(i) }
        var customers: [Customer] = []
        for _ in 0..<o.customers {
            let x = uniform(0, 100), y = uniform(0, 100), mean = uniform(5, 100)
            var near: [Int] = []
            for gy in max(0, Int(y / cell) - 1)...min(side - 1, Int(y / cell) + 1) {
                for gx in max(0, Int(x / cell) - 1)...min(side - 1, Int(x / cell) + 1) {
                    for t in grid[gy * side + gx] {
                        let (tx, ty) = terminalXY[t]
                        if (tx - x) * (tx - x) + (ty - y) * (ty - y) <= o.radius * o.radius { near.append(t) }
                    }
                }
            }
            customers.append(Customer(x: x, y: y, mean: mean, std: mean / 2, perDay: uniform(0, 4), terminals: near))
        }
        func poisson(_ lambda: Double) -> Int {
            let limit = exp(-lambda)
            var k = 0, p = rng.unit()
            while p > limit {
                k += 1
                p *= rng.unit()
            }
            return k
        }
        func count(_ rate: Double) -> Int { Int(rate) + (rng.unit() < rate - Double(Int(rate)) ? 1 : 0) }

        var terminalUntil: [Int: Int] = [:], customerUntil: [Int: Int] = [:]
        var out: [Transaction] = []
        out.reserveCapacity(o.customers * o.days * 2)
        var seq = 0
        for day in 0..<o.days {
            // Compromised today: fraud from tomorrow on.
            for _ in 0..<count(o.terminalsCompromisedPerDay) { terminalUntil[rng.int(o.terminals)] = day + o.terminalDays }
            for _ in 0..<count(o.customersCompromisedPerDay) { customerUntil[rng.int(o.customers)] = day + o.customerDays }
            var today: [Transaction] = []
            for (ci, c) in customers.enumerated() where !c.terminals.isEmpty {
                for _ in 0..<poisson(c.perDay) {
                    // Around midday; draws outside the day are dropped.
                    let second = Int((43_200 + 20_000 * rng.normal()).rounded())
                    guard (0..<86_400).contains(second) else { continue }
                    var amount = c.mean + c.std * rng.normal()
                    if amount < 0 { amount = uniform(0, 2 * c.mean) }
                    let terminal = c.terminals[rng.int(c.terminals.count)]
                    var fraud = amount > o.amountThreshold
                    if let until = terminalUntil[terminal], day <= until, until - o.terminalDays < day { fraud = true }
                    if let until = customerUntil[ci], day <= until, until - o.customerDays < day, rng.unit() < o.customerFraudShare {
                        amount *= o.amountFactor
                        fraud = true
                    }
                    seq += 1
                    var tx = Transaction(id: "pos-\(seq)", timestamp: o.start + Int64(day) * 86_400_000 + Int64(second) * 1000,
                                         amount: (amount * 100).rounded() / 100)
                    tx.customerID = "C\(ci)"
                    tx.terminalID = "T\(terminal)"
                    tx.label = fraud ? 1 : 0
                    today.append(tx)
                }
            }
            today.sort { ($0.timestamp, $0.id) < ($1.timestamp, $1.id) }
            out += today
            progress(Double(day + 1) / Double(o.days))
        }
        return out
    }

    /// The CSV header and the mapping that reads it (`vigil train --map`).
    public static let csvHeader = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD"
    public static let csvMap = """
        id: TRANSACTION_ID
        timestamp: TX_DATETIME
        customer_id: CUSTOMER_ID
        terminal_id: TERMINAL_ID
        amount: TX_AMOUNT
        label: TX_FRAUD
        """

    /// One CSV line: time as `YYYY-MM-DD HH:MM:SS` (UTC).
    public static func csv(_ tx: Transaction) -> String {
        let iso = Timestamp.formatISO8601(tx.timestamp)  // 2026-01-01T00:00:31.000Z
        let time = iso.prefix(10) + " " + iso.dropFirst(11).prefix(8)
        return "\(tx.id),\(time),\(tx.customerID ?? ""),\(tx.terminalID ?? ""),\(tx.amount),\(tx.label.map { String($0) } ?? "")"
    }
}
