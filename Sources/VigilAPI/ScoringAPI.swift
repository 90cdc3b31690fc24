import Foundation
import Vigil

/// Settings of the synchronous scoring API (`api:` in the daemon's YAML).
public struct APIConfiguration: Sendable, Equatable {
    /// Default: `127.0.0.1`. Any other address needs a token (`VIGIL_API_TOKEN`).
    public var host = "127.0.0.1"
    /// HTTP/JSON listener; nil: off. 0 picks a free port (printed in the log).
    public var httpPort: Int?
    /// gRPC listener; nil: off. 0 picks a free port (printed in the log).
    public var grpcPort: Int?
    public var batching = MicroBatchConfiguration()
    /// Largest request body (HTTP) or message (gRPC). Default: 1 MiB.
    public var maxBodyBytes = 1 << 20
    /// Most transactions in one batch request. Default: 1000.
    public var maxRequestTransactions = 1000
    public init() {}

    public var isEnabled: Bool { httpPort != nil || grpcPort != nil }

    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// A problem with one request or one transaction of a batch, as the API reports it.
public struct APIProblem: Error, Sendable, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        case invalidArgument = "invalid_argument"
        case resourceExhausted = "resource_exhausted"
        case deadlineExceeded = "deadline_exceeded"
        case unavailable
        case unauthenticated
    }

    public var code: Code
    public var field: String?
    public var reason: String

    public init(_ code: Code, field: String? = nil, _ reason: String) {
        self.code = code
        self.field = field
        self.reason = reason
    }

    init(_ error: TransactionDecodingError) {
        let first = error.problems.first
        self.init(.invalidArgument, field: first?.field, error.problems.map(\.description).joined(separator: "; "))
    }

    init(_ refusal: ScoringRefusal) {
        switch refusal {
        case .saturated: self.init(.resourceExhausted, "the scorer is saturated; retry shortly")
        case .deadlineExceeded: self.init(.deadlineExceeded, "the request's budget ran out before it could be scored")
        case .stopping: self.init(.unavailable, "the server is shutting down")
        }
    }

    /// `{"error":{"code":…,"field":…,"reason":…}}`, or the inner object alone.
    func encode(into w: inout JSONWriter) {
        w.object { w in
            w.field("code", code.rawValue)
            if let field { w.field("field", field) }
            w.field("reason", reason)
        }
    }

    public var json: [UInt8] {
        var w = JSONWriter()
        w.object { w in
            w.key("error")
            encode(into: &w)
        }
        return w.bytes
    }
}

/// What both protocols share: decoding with the daemon's limits, the micro-batcher, and the
/// metrics. A request is one transaction or a batch of them; a batch's transactions are scored
/// together, each answered on its own (a bad one does not fail the others).
public final class ScoringAPI: Sendable {
    public let configuration: APIConfiguration
    public let batcher: MicroBatcher
    let decoder: TransactionDecoder
    let metrics: APIMetrics
    /// `Authorization: Bearer …` expected on every request, or nil (loopback only).
    let token: String?

    public init(configuration: APIConfiguration, decoderLimits: DecoderLimits, token: String?, metrics: APIMetrics,
                score: @escaping MicroBatcher.Score) {
        self.configuration = configuration
        decoder = TransactionDecoder(limits: decoderLimits)
        self.metrics = metrics
        self.token = token
        batcher = MicroBatcher(configuration: configuration.batching, onBatch: { metrics.record($0) }, score: score)
    }

    /// Decodes and scores one transaction.
    func score(json bytes: [UInt8], deadline: ContinuousClock.Instant?) async throws(APIProblem) -> Verdict {
        let transaction: Transaction
        do {
            transaction = try decoder.decode(bytes)
        } catch {
            throw APIProblem(error)
        }
        do {
            return try await batcher.score([transaction], deadline: deadline)[0]
        } catch {
            throw APIProblem(error)
        }
    }

    /// Decodes and scores several transactions in one batch; a result per transaction, in order.
    func score(jsons: [ArraySlice<UInt8>], deadline: ContinuousClock.Instant?) async throws(APIProblem) -> [Result<Verdict, APIProblem>] {
        guard jsons.count <= configuration.maxRequestTransactions else {
            throw APIProblem(.invalidArgument, "\(jsons.count) transactions in one request; at most \(configuration.maxRequestTransactions)")
        }
        var results = [Result<Verdict, APIProblem>](repeating: .failure(APIProblem(.invalidArgument, "not scored")), count: jsons.count)
        var valid: [Transaction] = []
        var slots: [Int] = []
        for (i, json) in jsons.enumerated() {
            do {
                let t = try decoder.decode(json)
                valid.append(t)
                slots.append(i)
            } catch {
                results[i] = .failure(APIProblem(error))
            }
        }
        guard !valid.isEmpty else { return results }
        let verdicts: [Verdict]
        do {
            verdicts = try await batcher.score(valid, deadline: deadline)
        } catch {
            throw APIProblem(error)
        }
        for (slot, v) in zip(slots, verdicts) { results[slot] = .success(v) }
        return results
    }

    /// Checks an `Authorization` header value against the token, in constant time.
    func authorized(_ header: String?) -> Bool {
        guard let token else { return true }
        guard let header else { return false }
        return Secret.constantTimeEqual(header, "Bearer " + token)
    }

    /// Scores what is queued and stops taking requests.
    public func stop() { batcher.stop() }
}

/// The byte ranges of a top-level JSON array's elements, or nil when `bytes` is not an array
/// (an element's own validity is the decoder's business).
public func jsonArrayElements(_ bytes: [UInt8]) -> [Range<Int>]? {
    func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }
    guard let open = bytes.firstIndex(where: { !isSpace($0) }), bytes[open] == UInt8(ascii: "[") else { return nil }
    var elements: [Range<Int>] = []
    var depth = 0, inString = false, escaped = false
    var start = open + 1
    var i = start
    while i < bytes.count {
        let c = bytes[i]
        if inString {
            if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
        } else {
            switch c {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"): depth -= 1
            case UInt8(ascii: "]") where depth > 0: depth -= 1
            case UInt8(ascii: "]"):
                let last = start..<i
                let empty = !bytes[last].contains { !isSpace($0) }
                if !(empty && elements.isEmpty) { elements.append(last) }
                // Only whitespace may follow.
                return bytes[(i + 1)...].allSatisfy(isSpace) ? elements : nil
            case UInt8(ascii: ",") where depth == 0:
                elements.append(start..<i)
                start = i + 1
            default: break
            }
            if depth < 0 { return nil }
        }
        i += 1
    }
    return nil
}
