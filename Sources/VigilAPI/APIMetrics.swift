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
            name: "vigil_api_batch_size", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
            help: "Transactions per micro-batch of the synchronous API")
        batchRequests = registry.makeValueHistogram(
            name: "vigil_api_batch_requests", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
            help: "Requests gathered into one micro-batch")
        expired = registry.makeCounter(name: "vigil_api_deadline_exceeded_total", help: "Requests whose budget ran out before their batch started")
    }

    static let latencyBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    /// Counts a request and records its latency. `outcome`: `ok` or a problem code.
    func request(_ endpoint: String, outcome: String, duration: Duration) {
        registry.makeCounter(name: "vigil_api_requests_total", labels: [("endpoint", endpoint), ("outcome", outcome)],
                             help: "Synchronous API requests by endpoint and outcome").increment()
        registry.makeDurationHistogram(name: "vigil_api_request_seconds", labels: [("endpoint", endpoint)], buckets: Self.latencyBuckets,
                                       help: "Synchronous API request latency, from request received to response ready").record(duration)
    }

    func record(_ batch: MicroBatcher.BatchReport) {
        if batch.transactions > 0 { batchSize.record(Double(batch.transactions)) }
        batchRequests.record(Double(batch.requests))
        if batch.expired > 0 { expired.increment(by: Int64(batch.expired)) }
    }
}
