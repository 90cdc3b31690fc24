import FuzzSupport
import Vigil

/// Every rule file must load or fail with a `ConfigurationError` naming the file; one that loads
/// must evaluate a transaction without trapping.
let schema = FeatureSchemaProbe.schema

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    do {
        let rules = try RuleSet.parse(text, file: "fuzz.yaml", schema: schema)
        let tx = Transaction(id: "t", timestamp: 1_767_225_600_000, amount: 12.5, cardID: "4000123412341234", merchantID: "m1")
        let features = FeatureMatrix(schema: schema, rows: 1)
        _ = rules.evaluate([tx], features: features)
    } catch {
        precondition(error.file == "fuzz.yaml", "an error without its file")
    }
    return 0
}

enum FeatureSchemaProbe {
    /// The shipped model's feature schema, so rules may name real features.
    static let schema: FeatureSchema = try! FeaturePlan(spec: FeatureSpec.default).schema
}

@_cdecl("FuzzRules_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzz(data, size) }
