import VigilCore

/// Transaction fields in expressions, read through ``TransactionReference`` (no conformance of
/// `Transaction` itself: a closure compiled for it took the transaction by value and copied it
/// at every call).
extension Transaction {
    public static let allFields = TransactionField.allCases
    /// Transaction fields by name: numeric fields as numbers, the rest as strings. The label is
    /// not visible: nothing that scores may read it.
    public static let scope: Scope = {
        var b: [String: Binding] = [:]
        for (i, f) in TransactionField.allCases.enumerated() where f != .label {
            switch f.kind {
            case .number, .timestamp, .label: b[f.rawValue] = .number(slot: i)
            case .string: b[f.rawValue] = .string(slot: i)
            }
        }
        return Scope(b)
    }()
}

/// A transaction addressed in place, as an expression context (``Transaction/scope``).
public struct TransactionReference: ExpressionContext {
    public let transaction: UnsafePointer<Transaction>

    /// A context valid while `transaction` is.
    public init(_ transaction: UnsafePointer<Transaction>) { self.transaction = transaction }

    public func number(_ slot: Int) -> Double { Transaction.number(Transaction.allFields[slot], at: transaction) }
    public func string(_ slot: Int) -> String? { Transaction.string(Transaction.allFields[slot], at: transaction) }
    public func list(_ slot: Int, contains value: String) -> Bool { false }
}
