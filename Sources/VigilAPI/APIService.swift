import Logging
import ServiceLifecycle

/// Runs the configured listeners; on graceful shutdown they stop accepting and answer what is
/// in flight, then the batcher scores what is queued and stops.
public struct APIService: Service {
    let api: ScoringAPI
    let logger: Logger
    let onHTTPListening: @Sendable (Int) -> Void
    let onGRPCListening: @Sendable (Int) -> Void

    public init(api: ScoringAPI, logger: Logger, onHTTPListening: @escaping @Sendable (Int) -> Void = { _ in },
                onGRPCListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.api = api
        self.logger = logger
        self.onHTTPListening = onHTTPListening
        self.onGRPCListening = onGRPCListening
    }

    public func run() async throws {
        defer { api.stop() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if api.configuration.httpPort != nil {
                let app = HTTPScoringServer(api: api, logger: logger).application(onListening: onHTTPListening)
                group.addTask { try await app.run() }
            }
            if api.configuration.grpcPort != nil {
                let server = GRPCScoringServer(api: api, logger: logger)
                group.addTask { [onGRPCListening] in try await server.run(onListening: onGRPCListening) }
            }
            try await group.waitForAll()
        }
    }
}
