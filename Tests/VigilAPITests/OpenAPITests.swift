import Foundation
import Testing
import Vigil
import Yams
@testable import VigilAPI

/// `docs/openapi.yaml` against the code: the fields the decoder knows, the verdict the encoder
/// writes, the error codes and the statuses the server answers. (The running server is held to
/// the same statuses in `VigilDaemonTests/APITests`.)
struct OpenAPITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func document() throws -> [String: Any] {
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    static func schema(_ doc: [String: Any], _ name: String) throws -> [String: Any] {
        let components = try #require(doc["components"] as? [String: Any])
        let schemas = try #require(components["schemas"] as? [String: Any])
        return try #require(schemas[name] as? [String: Any], "schema \(name)")
    }

    @Test("the document is OpenAPI 3.1 and describes POST /v1/score with every status the server answers")
    func pathAndStatuses() throws {
        let doc = try Self.document()
        #expect(doc["openapi"] as? String == "3.1.0")
        let paths = try #require(doc["paths"] as? [String: Any])
        let score = try #require((paths["/v1/score"] as? [String: Any])?["post"] as? [String: Any])
        let responses = try #require(score["responses"] as? [String: Any])
        #expect(Set(responses.keys) == Set(HTTPScoringServer.statuses.map { String($0.code) }))
        let parameters = try #require(score["parameters"] as? [[String: Any]])
        #expect(parameters.contains { $0["name"] as? String == HTTPScoringServer.budgetHeader.rawName })
    }

    @Test("the transaction schema lists exactly the decoder's fields and required ones")
    func transactionSchema() throws {
        let schema = try Self.schema(try Self.document(), "Transaction")
        let properties = try #require(schema["properties"] as? [String: Any])
        #expect(Set(properties.keys) == Set(TransactionField.allCases.map(\.rawValue)))
        #expect(schema["required"] as? [String] == ["id", "timestamp", "amount"])
    }

    @Test("the verdict schema matches what the encoder writes, and the error codes the API's")
    func verdictAndProblemSchemas() throws {
        let doc = try Self.document()
        let verdict = Verdict(transactionID: "t", action: .review, probability: 0.5, memberScores: [.init(name: "a", probability: 0.4)],
                              reasons: [ReasonCode(kind: .rule, code: "r", detail: "d", value: 1)], tags: ["x"],
                              modelVersion: "m", rulesVersion: "r", timestamp: 1_700_000_000_000)
        let written = try #require(try JSONSerialization.jsonObject(with: Data(verdict.json().utf8)) as? [String: Any])
        let schema = try Self.schema(doc, "Verdict")
        let properties = try #require(schema["properties"] as? [String: Any])
        #expect(Set(properties.keys) == Set(written.keys))
        #expect(Set(schema["required"] as? [String] ?? []) == Set(written.keys).subtracting(["tags"]), "tags is written only when there are some")
        let action = try #require(properties["action"] as? [String: Any])
        #expect(action["enum"] as? [String] == Action.allCases.map(\.rawValue))
        let problem = try #require((try Self.schema(doc, "Problem"))["properties"] as? [String: Any])
        let codes = try #require((problem["code"] as? [String: Any])?["enum"] as? [String])
        #expect(Set(codes) == Set(APIProblem.Code.allCases.map(\.rawValue)))
    }
}
