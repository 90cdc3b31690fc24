import Foundation
import Testing
import VigilCore

/// The hostile corpus (`Tests/Corpus/hostile`): every file is one message as a producer might
/// send it. `accept-*` must decode; `reject-*` must fail with a reason — never a crash or a hang.
@Suite("Hostile corpus")
struct HostileCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Corpus/hostile").path
    static var files: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted() }

    @Test("the corpus is there")
    func present() {
        #expect(Self.files.count >= 40)
        #expect(Self.files.contains { $0.hasPrefix("accept-") } && Self.files.contains { $0.hasPrefix("reject-") })
    }

    @Test("each message decodes or fails with a reason", arguments: files)
    func decode(file: String) throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.directory + "/" + file)))
        do {
            let tx = try TransactionDecoder().decode(bytes)
            #expect(file.hasPrefix("accept-"), "\(file) decoded to \(tx.id)")
            #expect(tx.amount.isFinite && tx.amount >= 0)
        } catch {
            #expect(file.hasPrefix("reject-"), "\(file): \(error)")
            #expect(!error.problems.isEmpty && !error.description.isEmpty)
            // The reason never echoes a raw card number, email or IP.
            #expect(!error.description.contains("4111111111111111") && !error.description.contains("a@example.com") && !error.description.contains("192.0.2.7"))
        }
    }
}
