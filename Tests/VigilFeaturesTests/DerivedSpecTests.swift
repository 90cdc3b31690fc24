import Testing
@testable import VigilCore
@testable import VigilFeatures

/// The spec `vigil train` derives from the fields a data set carries, and the warning for a
/// given spec whose entities the data lacks.
@Suite struct DerivedSpecTests {
    static func rows(_ n: Int, _ fill: (Int, inout Transaction) -> Void) -> [Transaction] {
        (0..<n).map { i in
            var t = Transaction(id: "t\(i)", timestamp: 1_767_225_600_000 + Int64(i) * 1000, amount: Double(i % 50) + 1)
            fill(i, &t)
            return t
        }
    }

    static func derive(_ txs: [Transaction], delay: Int64 = 7 * 86_400_000) throws -> (FeatureSpec, [String]) {
        let text = FeatureSpec.derivedYAML(for: FieldCoverage(txs), labelDelay: delay)
        let spec = try FeatureSpec.parse(text, file: "derived.yaml")
        return (spec, try FeaturePlan(spec: spec).schema.names)
    }

    @Test("customer, terminal, amount, time: customer and terminal features only, risk ending at the delay")
    func pointOfSaleFields() throws {
        let (spec, names) = try Self.derive(Self.rows(500) { i, t in
            t.customerID = "c\(i % 40)"
            t.terminalID = "t\(i % 70)"
        })
        #expect(spec.entities.map(\.name) == ["customer", "terminal"])
        for n in ["customer_count_1h", "customer_mean_30d", "customer_amount_zscore", "customer_amount_ratio", "customer_new_terminal_id",
                  "customer_fraud_rate_7d_lag_7d", "customer_frauds_30d_lag_7d", "terminal_count_1d", "terminal_distinct_customer_id_1d",
                  "terminal_amount_zscore", "terminal_fraud_rate_1d_lag_7d", "amount", "hour", "is_weekend"] {
            #expect(names.contains(n), "\(n)")
        }
        #expect(!names.contains { $0.hasPrefix("card_") || $0.hasPrefix("merchant_") || $0.hasPrefix("device_") || $0.contains("distance") })
    }

    @Test("every field: each identity by its role, location and country features, derived channel and MCC")
    func richFields() throws {
        let (spec, names) = try Self.derive(Self.rows(500) { i, t in
            t.cardID = "card\(i % 30)"
            t.customerID = "cu\(i % 25)"
            t.email = "e\(i % 25)@x"
            t.merchantID = "m\(i % 9)"
            t.deviceID = "d\(i % 33)"
            t.ip = "10.0.0.\(i % 50)"
            t.country = i % 7 == 0 ? "DE" : "FR"
            t.channel = i % 2 == 0 ? "ecom" : "pos"
            t.mcc = i % 3 == 0 ? "5411" : "5999"
            t.lat = 48 + Double(i % 10) / 10
            t.lon = 2 + Double(i % 10) / 10
        })
        #expect(spec.entities.map(\.name) == ["card", "customer", "email", "merchant", "device", "ip"])
        for n in ["card_distance_km", "card_speed_kmh", "card_cross_border", "card_distinct_merchant_id_1d", "card_distinct_ip_1d",
                  "card_distinct_country_1d", "card_new_device_id", "merchant_distinct_card_id_1d", "device_distinct_card_id_1d",
                  "ip_fraud_rate_30d_lag_7d", "is_ecom", "mcc_code"] {
            #expect(names.contains(n), "\(n)")
        }
        // The first payer carries the spread across counterparts; the others do not repeat it.
        #expect(!names.contains("customer_distinct_merchant_id_1d"))
    }

    @Test("rare and constant fields produce no columns; no delay gives the plain fraud rate")
    func rareConstantAndNoDelay() throws {
        let (spec, names) = try Self.derive(Self.rows(1000) { i, t in
            t.cardID = "c\(i % 50)"
            t.merchantID = "m\(i % 20)"
            t.deviceID = i % 20 == 0 ? "d\(i)" : nil  // 5% of rows
            t.currency = "EUR"  // one value everywhere
            t.channel = "pos"
        }, delay: 0)
        #expect(spec.entities.map(\.name) == ["card", "merchant"])
        #expect(names.contains("card_fraud_rate_30d") && names.contains("merchant_fraud_rate_1d"))
        #expect(!names.contains { $0.contains("_lag_") || $0 == "is_ecom" || $0.hasPrefix("device_") })
    }

    @Test("a given spec names the entities most rows lack, with the share missing")
    func sparseEntitiesWarning() {
        let txs = Self.rows(400) { i, t in
            t.customerID = "c\(i % 40)"
            t.terminalID = "t\(i % 70)"
            t.deviceID = i % 4 == 0 ? "d\(i)" : nil
        }
        let sparse = FeatureSpec.default.sparseEntities(in: FieldCoverage(txs))
        #expect(sparse.map(\.entity) == ["card", "merchant", "device", "ip"])
        #expect(sparse.first { $0.entity == "device" }?.description == "entity 'device' (device_id) is missing in 75% of rows")
    }
}
