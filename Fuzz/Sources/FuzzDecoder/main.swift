import FuzzSupport
import Vigil

/// Every input must decode to a valid transaction or fail with a reason; the label decoder too.
func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    do {
        let tx = try TransactionDecoder().decode(bytes: bytes)
        precondition(tx.amount.isFinite && tx.amount >= 0, "decoder accepted an invalid amount")
        precondition(!tx.id.isEmpty, "decoder accepted an empty id")
    } catch {
        precondition(!error.problems.isEmpty, "an error without a reason")
    }
    _ = try? decodeLabel(bytes)
    return 0
}

@_cdecl("FuzzDecoder_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzz(data, size) }
