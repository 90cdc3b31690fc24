import Foundation
import VigilCore

extension SplitMix64 {
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u = max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// The fraud patterns the simulator plants, with the share of transactions each produces.
public enum FraudPattern: String, CaseIterable, Sendable {
    /// Bursts of tiny amounts on a stolen card number from one device, then a large one.
    case cardTesting = "card_testing"
    /// A stolen card used in person far from home soon after a genuine purchase.
    case impossibleTravel = "impossible_travel"
    /// Account takeover: new device and IP, higher amounts, e-commerce.
    case accountTakeover = "account_takeover"
    /// A skimmed terminal: after its compromise date a share of its transactions are fraud.
    case compromisedMerchant = "compromised_merchant"
    /// An amount far beyond the card's habits.
    case amountOutlier = "amount_outlier"
    /// Ordinary-looking purchases at risky merchant categories at night: rules miss these.
    case subtle
}

/// Generates a realistic synthetic payment stream with labels.
public struct Simulator: Sendable {
    public struct Options: Sendable {
        public var transactions: Int
        public var days: Int = 30
        public var seed: UInt64 = 42
        /// Start of the simulated period. Default: 2026-01-01T00:00:00Z.
        public var start: Int64 = 1_767_225_600_000
        /// Share of transactions that are fraud, across all patterns. Default: 1.2%.
        public var fraudRate: Double = 0.012
        public init(transactions: Int, days: Int = 30, seed: UInt64 = 42) {
            self.transactions = transactions
            self.days = days
            self.seed = seed
        }
    }

    struct City { let name: String; let country: String; let lat: Double; let lon: Double }
    static let cities: [City] = [
        .init(name: "Paris", country: "FR", lat: 48.86, lon: 2.35), .init(name: "Lyon", country: "FR", lat: 45.76, lon: 4.84),
        .init(name: "Berlin", country: "DE", lat: 52.52, lon: 13.40), .init(name: "Munich", country: "DE", lat: 48.14, lon: 11.58),
        .init(name: "Madrid", country: "ES", lat: 40.42, lon: -3.70), .init(name: "Milan", country: "IT", lat: 45.46, lon: 9.19),
        .init(name: "Amsterdam", country: "NL", lat: 52.37, lon: 4.90), .init(name: "London", country: "GB", lat: 51.51, lon: -0.13),
        .init(name: "Dublin", country: "IE", lat: 53.35, lon: -6.26), .init(name: "Warsaw", country: "PL", lat: 52.23, lon: 21.01),
        .init(name: "Lisbon", country: "PT", lat: 38.72, lon: -9.14), .init(name: "Stockholm", country: "SE", lat: 59.33, lon: 18.07),
    ]
    static let farCities: [City] = [
        .init(name: "Lagos", country: "NG", lat: 6.52, lon: 3.38), .init(name: "Manila", country: "PH", lat: 14.60, lon: 120.98),
        .init(name: "Sao Paulo", country: "BR", lat: -23.55, lon: -46.63), .init(name: "Jakarta", country: "ID", lat: -6.21, lon: 106.85),
    ]
    /// (mcc, typical amount, risky)
    static let categories: [(String, Double, Bool)] = [
        ("5411", 45, false), ("5812", 30, false), ("5541", 55, false), ("5999", 60, false), ("4111", 8, false),
        ("5311", 80, false), ("5732", 250, true), ("5944", 400, true), ("7995", 120, true), ("4829", 200, true),
    ]

    struct Customer {
        var id: String, card: String, email: String, devices: [String], ip: String
        var city: Int, typical: Double, perDay: Double
    }
    struct Merchant { var id: String, terminals: [String], category: Int, city: Int, ecom: Bool }

    public let options: Options
    public init(options: Options) { self.options = options }

    /// A generated transaction and the fraud pattern that produced it (nil: genuine).
    public struct Labelled: Sendable, Hashable {
        public var transaction: Transaction
        public var pattern: FraudPattern?
    }

    /// Generates the stream sorted by time. `progress` is called with the share done (0…1).
    public func generate(progress: (Double) -> Void = { _ in }) -> [Transaction] {
        generateLabelled(progress: progress).map(\.transaction)
    }

    /// The stream with each transaction's pattern, for tests and per-pattern analysis.
    public func generateLabelled(progress: (Double) -> Void = { _ in }) -> [Labelled] {
        var rng = SplitMix64(seed: options.seed)
        let n = options.transactions
        let span = Int64(options.days) * 86_400_000
        // The population follows the daily volume, so per-entity rates (and with them the feature
        // distributions a model learns) do not depend on how long a stream is.
        let perDay = Double(n) / Double(options.days)
        let nCustomers = max(50, Int(perDay / 0.9))
        let nMerchants = max(20, nCustomers / 10)
        var customers: [Customer] = []
        customers.reserveCapacity(nCustomers)
        for c in 0..<nCustomers {
            let pan = "4" + String(format: "%015llu", (rng.next() % 1_000_000_000_000_000))
            customers.append(Customer(
                id: "cust_\(c)", card: pan, email: "user\(c)@example.com",
                devices: ["dev_\(c)_0"] + (rng.unit() < 0.3 ? ["dev_\(c)_1"] : []),
                ip: "10.\(c / 65536 % 256).\(c / 256 % 256).\(c % 256)",
                city: rng.int(Simulator.cities.count), typical: exp(3.2 + 0.8 * rng.normal()), perDay: 0.2 + 2 * rng.unit()))
        }
        var merchants: [Merchant] = []
        for m in 0..<nMerchants {
            let terminals = (0..<(1 + rng.int(3))).map { "term_\(m)_\($0)" }
            merchants.append(Merchant(id: "merch_\(m)", terminals: terminals, category: rng.int(Simulator.categories.count),
                                      city: rng.int(Simulator.cities.count), ecom: rng.unit() < 0.4))
        }
        // Merchants in a customer's city, for card-present purchases.
        var byCity = [[Int]](repeating: [], count: Simulator.cities.count)
        for (i, m) in merchants.enumerated() where !m.ecom { byCity[m.city].append(i) }
        let ecomMerchants = merchants.indices.filter { merchants[$0].ecom }
        let compromised = Set((0..<max(1, nMerchants / 100)).map { _ in byCity.flatMap { $0 }.randomElement(using: &rng)! })
        let compromiseTime = options.start + span / 3

        var out: [Labelled] = []
        out.reserveCapacity(n + n / 20)
        var pattern: FraudPattern?
        var seq = 0
        func nextID() -> String {
            seq += 1
            return "tx_\(options.seed)_\(seq)"
        }
        func diurnalTime() -> Int64 {
            let day = Int64(rng.int(options.days))
            // More activity in the day and evening than at night.
            let h = Double(rng.int(24))
            let accept = [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.9, 1, 0.9, 0.9, 0.9, 0.9, 1, 1, 0.9, 0.8, 0.6, 0.4, 0.3][Int(h)]
            let weekendBoost = (day + 3) % 7 >= 5 ? 1.1 : 1.0
            if rng.unit() > accept * weekendBoost / 1.1 { return -1 }
            return options.start + day * 86_400_000 + Int64((h + rng.unit()) * 3_600_000)
        }
        func purchase(_ c: Customer, at t: Int64, label: Int8 = 0) -> Transaction {
            let ecom = rng.unit() < 0.35
            let m = ecom || byCity[c.city].isEmpty ? merchants[ecomMerchants.isEmpty ? 0 : ecomMerchants[rng.int(ecomMerchants.count)]]
                : merchants[byCity[c.city][rng.int(byCity[c.city].count)]]
            let city = Simulator.cities[m.ecom ? c.city : m.city]
            let amount = max(0.5, (c.typical * Simulator.categories[m.category].1 / 50 * exp(0.6 * rng.normal()) * 100).rounded() / 100)
            return Transaction(
                id: nextID(), timestamp: t, amount: amount, currency: "EUR", cardID: c.card, customerID: c.id,
                merchantID: m.id, terminalID: m.terminals[rng.int(m.terminals.count)], deviceID: m.ecom ? c.devices[rng.int(c.devices.count)] : nil,
                ip: m.ecom ? c.ip : nil, email: c.email, country: city.country, mcc: Simulator.categories[m.category].0,
                channel: m.ecom ? "ecom" : "pos", lat: m.ecom ? nil : city.lat + rng.normal() * 0.05,
                lon: m.ecom ? nil : city.lon + rng.normal() * 0.05, label: label)
        }

        let fraudBudget = Int(Double(n) * options.fraudRate)
        let legitTarget = n - fraudBudget
        // Genuine purchases, weighted by each customer's rate.
        let totalRate = customers.reduce(0) { $0 + $1.perDay }
        var cumulative: [Double] = []
        var acc = 0.0
        for c in customers {
            acc += c.perDay / totalRate
            cumulative.append(acc)
        }
        func pickCustomer() -> Int {
            let u = rng.unit()
            var lo = 0, hi = cumulative.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cumulative[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        var lastReport = 0
        while out.count < legitTarget {
            let t = diurnalTime()
            guard t >= 0 else { continue }
            let c = customers[pickCustomer()]
            var tx = purchase(c, at: t)
            // Skimmed terminals: a share of their transactions after compromise are fraud.
            if t > compromiseTime, let mi = Int(tx.merchantID!.dropFirst(6)), compromised.contains(mi), rng.unit() < 0.25 {
                tx.label = 1
                tx.amount = (tx.amount * (1.5 + rng.unit())).rounded()
                out.append(Labelled(transaction: tx, pattern: .compromisedMerchant))
            } else {
                out.append(Labelled(transaction: tx, pattern: nil))
            }
            if out.count - lastReport >= 50_000 {
                lastReport = out.count
                progress(Double(out.count) / Double(n) * 0.8)
            }
        }
        // Fraud patterns.
        var fraud = 0
        while fraud < fraudBudget {
            let c = customers[rng.int(customers.count)]
            let t = options.start + Int64(rng.unit() * Double(span))
            let chosen = FraudPattern.allCases[rng.int(FraudPattern.allCases.count)]
            pattern = chosen
            switch chosen {
            case .cardTesting:
                let device = "dev_fraud_\(rng.next() % 100_000)"
                let ip = "203.0.\(rng.int(256)).\(rng.int(256))"
                let m = merchants[ecomMerchants.isEmpty ? 0 : ecomMerchants[rng.int(ecomMerchants.count)]]
                var tt = t
                for _ in 0..<(4 + rng.int(8)) {
                    tt += Int64(5_000 + rng.int(60_000))
                    out.append(Labelled(transaction: Transaction(id: nextID(), timestamp: tt, amount: Double(1 + rng.int(400)) / 100, currency: "EUR",
                                           cardID: c.card, customerID: c.id, merchantID: m.id, terminalID: m.terminals[0], deviceID: device,
                                           ip: ip, email: c.email, country: Simulator.cities[c.city].country, mcc: "5999", channel: "ecom", label: 1), pattern: pattern))
                    fraud += 1
                }
                out.append(Labelled(transaction: Transaction(id: nextID(), timestamp: tt + 120_000, amount: (300 + rng.unit() * 1500).rounded(), currency: "EUR",
                                       cardID: c.card, customerID: c.id, merchantID: m.id, terminalID: m.terminals[0], deviceID: device,
                                       ip: ip, email: c.email, country: Simulator.cities[c.city].country, mcc: "5732", channel: "ecom", label: 1), pattern: pattern))
                fraud += 1
            case .impossibleTravel:
                out.append(Labelled(transaction: purchase(c, at: t), pattern: nil))
                let far = Simulator.farCities[rng.int(Simulator.farCities.count)]
                for k in 0..<(1 + rng.int(3)) {
                    out.append(Labelled(transaction: Transaction(id: nextID(), timestamp: t + Int64(1800_000 + k * 600_000 + rng.int(3_600_000)),
                                           amount: (c.typical * (2 + 4 * rng.unit())).rounded(), currency: "EUR", cardID: c.card,
                                           customerID: c.id, merchantID: "merch_far_\(rng.int(50))", terminalID: "term_far_\(rng.int(80))",
                                           country: far.country, mcc: "5944", channel: "pos", lat: far.lat, lon: far.lon, label: 1), pattern: pattern))
                    fraud += 1
                }
            case .accountTakeover:
                let device = "dev_ato_\(rng.next() % 1_000_000)"
                let ip = "198.51.\(rng.int(256)).\(rng.int(256))"
                for k in 0..<(2 + rng.int(3)) {
                    let m = merchants[ecomMerchants.isEmpty ? 0 : ecomMerchants[rng.int(ecomMerchants.count)]]
                    out.append(Labelled(transaction: Transaction(id: nextID(), timestamp: t + Int64(k * 900_000 + rng.int(600_000)),
                                           amount: (c.typical * (3 + 6 * rng.unit())).rounded(), currency: "EUR", cardID: c.card,
                                           customerID: c.id, merchantID: m.id, terminalID: m.terminals[0], deviceID: device, ip: ip,
                                           email: c.email, country: Simulator.cities[c.city].country, mcc: Simulator.categories[m.category].0,
                                           channel: "ecom", label: 1), pattern: pattern))
                    fraud += 1
                }
            case .compromisedMerchant:
                continue  // planted in the genuine stream above
            case .amountOutlier:
                var tx = purchase(c, at: t, label: 1)
                tx.amount = (c.typical * (15 + 30 * rng.unit())).rounded()
                out.append(Labelled(transaction: tx, pattern: pattern))
                fraud += 1
            case .subtle:
                let risky = Simulator.categories.indices.filter { Simulator.categories[$0].2 }
                var tx = purchase(c, at: options.start + Int64(rng.int(options.days)) * 86_400_000 + Int64(rng.int(5 * 3_600_000)), label: 1)
                tx.mcc = Simulator.categories[risky[rng.int(risky.count)]].0
                tx.amount = (tx.amount * (1.5 + 2 * rng.unit())).rounded()
                out.append(Labelled(transaction: tx, pattern: pattern))
                fraud += 1
            }
        }
        progress(0.9)
        let start = options.start, end = options.start + span
        out.removeAll { $0.transaction.timestamp < start || $0.transaction.timestamp >= end }
        out.sort {
            $0.transaction.timestamp < $1.transaction.timestamp
                || ($0.transaction.timestamp == $1.transaction.timestamp && $0.transaction.id < $1.transaction.id)
        }
        progress(1)
        return out
    }

    /// Canonical JSON for one transaction (what `vigil simulate` writes, one per line).
    /// With `pattern`, the fraud pattern is written as an extra `pattern` field (ignored by the
    /// decoder, kept for analysis).
    public static func json(_ tx: Transaction, pattern: FraudPattern? = nil) -> String {
        var w = JSONWriter()
        w.object { w in
            w.field("id", tx.id)
            w.field("timestamp", Timestamp.formatISO8601(tx.timestamp))
            w.field("amount", tx.amount)
            for f in TransactionField.allCases where f.kind == .string && f != .id {
                if let v = tx.string(f) { w.field(f.rawValue, v) }
            }
            if let lat = tx.lat { w.field("lat", (lat * 1e5).rounded() / 1e5) }
            if let lon = tx.lon { w.field("lon", (lon * 1e5).rounded() / 1e5) }
            if let l = tx.label { w.field("label", Int(l)) }
            if let pattern { w.field("pattern", pattern.rawValue) }
        }
        return w.text
    }
}
