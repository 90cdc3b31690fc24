import VigilCore

extension Transaction: ExpressionContext {
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

    public func number(_ slot: Int) -> Double { number(Transaction.allFields[slot]) }
    public func string(_ slot: Int) -> String? { string(Transaction.allFields[slot]) }
    public func list(_ slot: Int, contains value: String) -> Bool { false }
}

/// A transaction addressed in place, as an expression context (``Transaction/scope``): a
/// closure compiled for ``Transaction`` itself is handed the transaction by value, which copied
/// it (a retain and release of each of its strings) at every call on an element of a buffer.
public struct TransactionReference: ExpressionContext {
    public let transaction: UnsafePointer<Transaction>

    /// A context valid while `transaction` is.
    public init(_ transaction: UnsafePointer<Transaction>) { self.transaction = transaction }

    public func number(_ slot: Int) -> Double { Transaction.number(Transaction.allFields[slot], at: transaction) }
    public func string(_ slot: Int) -> String? { Transaction.string(Transaction.allFields[slot], at: transaction) }
    public func list(_ slot: Int, contains value: String) -> Bool { false }
}
