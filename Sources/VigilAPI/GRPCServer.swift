import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import Vigil

/// `vigil.v1.Scoring` (`Proto/vigil.proto`; the Swift in `Generated/` comes from
/// `scripts/generate-grpc.sh`): the HTTP API's semantics over gRPC. Problems map to statuses:
/// `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `UNAVAILABLE`,
/// `UNAUTHENTICATED`. A call's deadline (`grpc-timeout`) is its budget.
struct GRPCScoringService: Vigil_V1_Scoring.ServiceProtocol {
    let api: ScoringAPI

    func score(request: ServerRequest<Vigil_V1_ScoreRequest>, context: ServerContext) async throws -> ServerResponse<Vigil_V1_Verdict> {
        let clock = ContinuousClock()
        let start = clock.now
        do throws(APIProblem) {
            try authorize(request.metadata)
            let verdict = try await api.score(json: Array(request.message.transactionJson), deadline: Self.deadline(request.metadata, from: start))
            api.metrics.request("grpc_unary", outcome: "ok", duration: clock.now - start)
            return ServerResponse(message: Self.message(verdict))
        } catch {
            api.metrics.request("grpc_unary", outcome: error.code.rawValue, duration: clock.now - start)
            throw Self.rpcError(error)
        }
    }

    func scoreStream(request: StreamingServerRequest<Vigil_V1_ScoreRequest>, context: ServerContext) async throws -> StreamingServerResponse<Vigil_V1_ScoreResponse> {
        do throws(APIProblem) {
            try authorize(request.metadata)
        } catch {
            api.metrics.request("grpc_stream", outcome: error.code.rawValue, duration: .zero)
            throw Self.rpcError(error)
        }
        let api = self.api
        let deadline = Self.deadline(request.metadata, from: ContinuousClock.now)
        return StreamingServerResponse { writer in
            // Requests are scored concurrently (so a stream fills batches like many callers
            // would); answers go out as they are ready, each with its request's sequence.
            let (answers, sink) = AsyncStream<Vigil_V1_ScoreResponse>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await answer in answers { try await writer.write(answer) }
                }
                try await withThrowingDiscardingTaskGroup { scoring in
                    for try await message in request.messages {
                        scoring.addTask {
                            let clock = ContinuousClock()
                            let start = clock.now
                            var answer = Vigil_V1_ScoreResponse()
                            answer.sequence = message.sequence
                            do throws(APIProblem) {
                                answer.verdict = Self.message(try await api.score(json: Array(message.transactionJson), deadline: deadline))
                                api.metrics.request("grpc_stream", outcome: "ok", duration: clock.now - start)
                            } catch {
                                var problem = Vigil_V1_Problem()
                                problem.code = error.code.rawValue
                                problem.field = error.field ?? ""
                                problem.reason = error.reason
                                answer.problem = problem
                                api.metrics.request("grpc_stream", outcome: error.code.rawValue, duration: clock.now - start)
                            }
                            sink.yield(answer)
                        }
                    }
                }
                sink.finish()
                try await group.waitForAll()
            }
            return [:]
        }
    }

    private func authorize(_ metadata: Metadata) throws(APIProblem) {
        guard api.authorized(metadata[stringValues: "authorization"].first(where: { _ in true })) else {
            throw APIProblem(.unauthenticated, "missing or wrong bearer token")
        }
    }

    static func message(_ v: Verdict) -> Vigil_V1_Verdict {
        var m = Vigil_V1_Verdict()
        m.transactionID = v.transactionID
        m.action = v.action.rawValue
        m.probability = v.probability
        m.reasons = v.reasons.map { r in
            var reason = Vigil_V1_Reason()
            reason.kind = r.kind.rawValue
            reason.code = r.code
            if let d = r.detail { reason.detail = d }
            if let value = r.value { reason.value = value }
            return reason
        }
        m.tags = v.tags
        m.modelVersion = v.modelVersion
        m.rulesVersion = v.rulesVersion
        m.degraded = v.degraded
        var json: [UInt8] = []
        v.encodeJSON(into: &json)
        m.json = Data(json)
        return m
    }

    static func rpcError(_ p: APIProblem) -> RPCError {
        let code: RPCError.Code = switch p.code {
        case .invalidArgument: .invalidArgument
        case .resourceExhausted: .resourceExhausted
        case .deadlineExceeded: .deadlineExceeded
        case .unavailable: .unavailable
        case .unauthenticated: .unauthenticated
        }
        return RPCError(code: code, message: p.field.map { "\($0): \(p.reason)" } ?? p.reason)
    }

    /// The call's deadline from its `grpc-timeout` header ("<digits><H|M|S|m|u|n>"), which the
    /// runtime passes through in the request metadata.
    static func deadline(_ metadata: Metadata, from start: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        guard let raw = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }), raw.count >= 2, raw.count <= 9,
              let amount = Int64(raw.dropLast()) else { return nil }
        let timeout: Duration? = switch raw.last {
        case "H": .seconds(amount * 3600)
        case "M": .seconds(amount * 60)
        case "S": .seconds(amount)
        case "m": .milliseconds(amount)
        case "u": .microseconds(amount)
        case "n": .nanoseconds(amount)
        default: nil
        }
        return timeout.map { start + $0 }
    }
}

/// The gRPC listener; graceful shutdown stops accepting calls and lets the ones in flight finish.
struct GRPCScoringServer: Sendable {
    let api: ScoringAPI
    let logger: Logger

    func run(onListening: @escaping @Sendable (Int) -> Void) async throws {
        let c = api.configuration
        let host = c.host == "localhost" ? "127.0.0.1" : c.host
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: c.grpcPort ?? 0) : .ipv4(host: host, port: c.grpcPort ?? 0)
        let transport = HTTP2ServerTransport.Posix(
            address: address, transportSecurity: .plaintext,
            config: .defaults { $0.rpc.maxRequestPayloadSize = c.maxBodyBytes })
        let server = GRPCServer(transport: transport, services: [GRPCScoringService(api: api)])
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                if let bound = try await server.listeningAddress {
                    let port = bound.ipv4?.port ?? bound.ipv6?.port ?? 0
                    logger.info("scoring API (gRPC) listening", metadata: ["address": "\(bound)"])
                    onListening(port)
                }
            }
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}
