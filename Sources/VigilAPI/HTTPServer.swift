import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Vigil

/// `POST /v1/score` on its own listener: one transaction (Vigil's canonical JSON) answered with
/// the verdict JSON the verdicts topic carries, or a JSON array of transactions answered with an
/// array of verdicts and per-transaction errors, in order. Contract: `docs/api.md` and
/// `docs/openapi.yaml`.
///
/// Status codes: 200 scored; 400 bad input (JSON `error` with `field` and `reason`, never a 500
/// for a client's mistake); 401 missing or wrong token; 413 body too large; 429 saturated, with
/// `Retry-After`; 503 shutting down; 504 the request's budget (`X-Vigil-Budget-Ms`) ran out
/// before its batch started.
public struct HTTPScoringServer: Sendable {
    public static let budgetHeader = HTTPField.Name("X-Vigil-Budget-Ms")!
    let api: ScoringAPI
    let logger: Logger

    public init(api: ScoringAPI, logger: Logger) {
        self.api = api
        self.logger = logger
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let api = self.api
        let logger = self.logger
        router.post("/v1/score") { request, _ -> Response in
            let clock = ContinuousClock()
            let start = clock.now
            let response = await Self.handle(request, api: api, logger: logger, start: start)
            api.metrics.request("http", outcome: response.outcome, duration: clock.now - start)
            return response.response
        }
        return router
    }

    static func handle(_ request: Request, api: ScoringAPI, logger: Logger, start: ContinuousClock.Instant) async -> (response: Response, outcome: String) {
        guard api.authorized(request.headers[.authorization]) else {
            let p = APIProblem(.unauthenticated, "missing or wrong bearer token")
            return (problem(status(for: p.code), p), p.code.rawValue)
        }
        let deadline: ContinuousClock.Instant?
        if let text = request.headers[budgetHeader] {
            guard let ms = Int(text), ms > 0, ms <= 3_600_000 else {
                let p = APIProblem(.invalidArgument, field: "X-Vigil-Budget-Ms", "expected whole milliseconds, 1 to 3600000")
                return (problem(status(for: p.code), p), p.code.rawValue)
            }
            deadline = start + .milliseconds(ms)
        } else {
            deadline = nil
        }
        let body: [UInt8]
        do {
            let buffer = try await request.body.collect(upTo: api.configuration.maxBodyBytes)
            body = Array(buffer.readableBytesView)
        } catch {
            return (problem(.contentTooLarge, APIProblem(.invalidArgument, "request body larger than \(api.configuration.maxBodyBytes) bytes")), "invalid_argument")
        }
        do throws(APIProblem) {
            if let elements = jsonArrayElements(body) {
                guard !elements.isEmpty else { throw APIProblem(.invalidArgument, "empty batch") }
                let results = try await api.score(jsons: elements.map { body[$0] }, deadline: deadline)
                var out: [UInt8] = [UInt8(ascii: "[")]
                for (i, r) in results.enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    switch r {
                    case .success(let v): v.encodeJSON(into: &out)
                    case .failure(let p):
                        var w = JSONWriter()
                        w.object { w in
                            w.field("index", i)
                            w.key("error")
                            p.encode(into: &w)
                        }
                        out += w.bytes
                    }
                }
                out.append(UInt8(ascii: "]"))
                return (json(.ok, out), "ok")
            }
            let verdict = try await api.score(json: body, deadline: deadline)
            var out: [UInt8] = []
            verdict.encodeJSON(into: &out)
            return (json(.ok, out), "ok")
        } catch {
            let status = Self.status(for: error.code)
            var response = problem(status, error)
            if status == .tooManyRequests || status == .serviceUnavailable { response.headers[.retryAfter] = "1" }
            return (response, error.code.rawValue)
        }
    }

    static func status(for code: APIProblem.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidArgument: .badRequest
        case .resourceExhausted: .tooManyRequests
        case .deadlineExceeded: .gatewayTimeout
        case .unavailable: .serviceUnavailable
        case .unauthenticated: .unauthorized
        }
    }

    /// Every status the endpoint answers (`docs/openapi.yaml` documents exactly these).
    public static let statuses: [HTTPResponse.Status] = [.ok, .contentTooLarge] + APIProblem.Code.allCases.map(status(for:))

    static func json(_ status: HTTPResponse.Status, _ bytes: [UInt8]) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func problem(_ status: HTTPResponse.Status, _ p: APIProblem) -> Response { json(status, p.json) }

    /// The listener as a service: graceful shutdown stops accepting and finishes the requests
    /// in flight.
    public func application(onListening: @escaping @Sendable (Int) -> Void = { _ in }) -> some ApplicationProtocol {
        let logger = self.logger
        return Application(
            router: router(),
            configuration: .init(address: .hostname(api.configuration.host, port: api.configuration.httpPort ?? 0), serverName: "vigild"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("scoring API (HTTP) listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
                onListening(port)
            },
            logger: logger)
    }
}
