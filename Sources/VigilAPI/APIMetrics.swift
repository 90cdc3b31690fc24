import Prometheus

/// The synchronous API's metrics, registered in the registry it is given (the daemon's).
public final class APIMetrics: Sendable {
    /// Requests by endpoint and outcome (`ok`, or the problem's code).
    private let registry: PrometheusCollectorRegistry
    let batchSize: ValueHistogram
    let batchRequests: ValueHistogram
    let expired: Counter

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        batchSize = registry.makeValueHistogram(
            descriptor: .init("vigil_api_batch_size", help: "Transactions per micro-batch of the synchronous API"),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
        batchRequests = registry.makeValueHistogram(
            descriptor: .init("vigil_api_batch_requests", help: "Requests gathered into one micro-batch"),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256])
        expired = registry.makeCounter(descriptor: .init("vigil_api_deadline_exceeded_total", help: "Requests whose budget ran out before their batch started"))
    }

    static let latencyBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    /// Counts a request and records its latency. `outcome`: `ok` or a problem code.
    func request(_ endpoint: String, outcome: String, duration: Duration) {
        registry.makeCounter(descriptor: .init("vigil_api_requests_total", help: "Synchronous API requests by endpoint and outcome"),
                             labels: [("endpoint", endpoint), ("outcome", outcome)]).increment()
        registry.makeDurationHistogram(
            descriptor: .init("vigil_api_request_seconds", help: "Synchronous API request latency, from request received to response ready"),
            labels: [("endpoint", endpoint)], buckets: Self.latencyBuckets).record(duration)
    }

    func record(_ batch: MicroBatcher.BatchReport) {
        if batch.transactions > 0 { batchSize.record(Double(batch.transactions)) }
        batchRequests.record(Double(batch.requests))
        if batch.expired > 0 { expired.increment(by: Int64(batch.expired)) }
    }
}

extension MetricNameDescriptor {
    /// A metric named `name` exactly: no namespace, subsystem or unit joined to it (the
    /// descriptor form of the registry's factories, whose `name:` forms are deprecated).
    package init(_ name: String, help: String) { self.init(metricName: name, unitName: "", helpText: help) }
}
