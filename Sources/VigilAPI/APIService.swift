import Logging
import ServiceLifecycle

/// Runs the configured listeners; on graceful shutdown they stop accepting and answer what is
/// in flight, then the batcher scores what is queued and stops.
public struct APIService: Service {
    let api: ScoringAPI
    let logger: Logger
    let onHTTPListening: @Sendable (Int) -> Void

    public init(api: ScoringAPI, logger: Logger, onHTTPListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.api = api
        self.logger = logger
        self.onHTTPListening = onHTTPListening
    }

    public func run() async throws {
        defer { api.stop() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if api.configuration.httpPort != nil {
                let app = HTTPScoringServer(api: api, logger: logger).application(onListening: onHTTPListening)
                group.addTask { try await app.run() }
            }
            try await group.waitForAll()
        }
    }
}
