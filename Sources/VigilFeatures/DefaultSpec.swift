extension FeatureSpec {
    /// The feature spec Vigil ships with (`vigil features --print-default` writes it out).
    public static let defaultYAML = """
        # Vigil default feature spec. Names and order are the model's columns.
        version: 1
        entities:
          card: card_id
          customer: customer_id
          merchant: merchant_id
          device: device_id
          ip: ip
        fields: [amount]
        calendar: [hour, weekday, night, weekend]
        aggregates:
          - entity: card
            windows: [5m, 1h, 24h, 7d]
            ops: [count, sum, mean, max]
          - entity: card
            windows: [24h]
            ops: [std, distinct(merchant_id), distinct(device_id), distinct(country)]
          - entity: card
            name: small
            filter: amount < 5
            windows: [10m, 1h]
            ops: [count]
          - entity: card
            name: big
            filter: amount > 1000
            windows: [5m, 24h]
            ops: [count]
          - entity: customer
            windows: [1h, 24h]
            ops: [count, sum]
          - entity: merchant
            windows: [1h, 24h]
            ops: [count, mean]
          - entity: device
            windows: [1h, 24h]
            ops: [count, distinct(card_id)]
          - entity: ip
            windows: [1h]
            ops: [count, distinct(card_id)]
        profiles:
          - entity: card
            history: 30d
            features: [amount_zscore, amount_ratio, secs_since_last, distance_km, speed_kmh, cross_border]
            first_seen: [device_id, merchant_id]
          - entity: customer
            history: 30d
            first_seen: [device_id]
        risk:
          - entity: merchant
            windows: [7d, 30d]
          - entity: device
            windows: [30d]
        derived:
          - name: is_ecom
            expr: channel == "ecom"
          - name: mcc_code
            expr: number(mcc)
        """

    /// The parsed default spec.
    public static var `default`: FeatureSpec {
        // The shipped spec is covered by tests; failing here is a build defect.
        try! parse(defaultYAML, file: "<default feature spec>")
    }
}
