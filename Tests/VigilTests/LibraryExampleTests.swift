import Foundation
import Testing
import Vigil

/// The example of docs/library.md, kept compiling and running.
@Suite(.serialized) struct LibraryExampleTests {
    @Test func theDocumentedExampleRuns() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let secretFromYourVault = "a-secret-of-at-least-16-bytes"
        var configuration = ScorerConfiguration(
            modelDirectory: root + "/models/default",
            rulesPath: root + "/rules/default.yaml",
            costsPath: nil)
        configuration.hasher = try KeyedHasher(secret: Array(secretFromYourVault.utf8))
        configuration.degradation = .scoreWithAvailable

        let scorer = try Scorer(configuration: configuration)
        let decoder = TransactionDecoder()
        let tx = try decoder.decode(#"{"id":"t1","timestamp":"2026-03-01T12:00:00Z","amount":42.5,"card_id":"4111111111111111"}"#)
        let tx2 = try decoder.decode(#"{"id":"t2","timestamp":"2026-03-01T12:00:05Z","amount":1.5,"card_id":"4000000000000002"}"#)

        let verdict = scorer.score(tx)
        let verdicts = scorer.score([tx, tx2])
        #expect(verdict.sameDecision(as: verdicts[0]))
        #expect(verdict.action == .approve)  // on the allow list
        #expect(verdicts[1].action == .block && verdicts[1].reasons.first?.code == "deny_listed")
        #expect(!verdicts[1].json().contains("4000000000000002"))

        #expect(try scorer.apply(labels: [Label(transactionID: "t1", isFraud: true)]) == 1)
        var next = scorer.configuration
        next.rulesPath = root + "/rules/does-not-exist.yaml"
        #expect(throws: ConfigurationError.self) { try scorer.reload(next) }
        #expect(scorer.versions.rules == "2026-11-22.1")
    }
}
