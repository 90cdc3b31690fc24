import CXGBoost
import Foundation
import VigilCore

/// An XGBoost C-API failure, with the library's own message.
public struct XGBoostError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var message: String
    public var description: String { "XGBoost \(operation): \(message)" }

    static func check(_ rc: Int32, _ operation: String) throws(XGBoostError) {
        guard rc != 0 else { return }
        throw XGBoostError(operation: operation, message: String(cString: XGBGetLastError()))
    }
}

/// One XGBoost model, owned: the handle is freed in `deinit`.
///
/// Prediction goes through `XGBoosterPredictFromDense` (in-place prediction over the batch's
/// matrix, no DMatrix per call), one call per batch, with `nthread` set explicitly.
/// - Note: Calls on one handle are serialised by a lock; XGBoost's predictor keeps per-handle
///   scratch state.
public final class Booster: @unchecked Sendable {
    // Unchecked: the handle is immutable after init and every use goes through `lock`.
    private let handle: BoosterHandle?
    private let lock = NSLock()
    public let featureCount: Int
    /// A linear booster (`gblinear`, the logistic baseline): XGBoost has no in-place prediction
    /// for it, so it predicts through a DMatrix.
    public let isLinear: Bool

    /// Loads a model file (`.json` or `.ubj`).
    public init(path: String, threads: Int = 1) throws(XGBoostError) {
        var h: BoosterHandle?
        try XGBoostError.check(XGBoosterCreate(nil, 0, &h), "create")
        do {
            try XGBoostError.check(XGBoosterLoadModel(h, path), "load \(path)")
            try XGBoostError.check(XGBoosterSetParam(h, "nthread", String(threads)), "set nthread")
        } catch {
            XGBoosterFree(h)
            throw error
        }
        var n: bst_ulong = 0
        XGBoosterGetNumFeature(h, &n)
        featureCount = Int(n)
        isLinear = Self.linear(h)
        handle = h
    }

    /// A trained model copied into a handle of its own (through its JSON), for models that
    /// cannot be sliced out of the training handle.
    static func copy(of h: BoosterHandle?) throws(XGBoostError) -> Booster {
        var len: bst_ulong = 0
        var out: UnsafePointer<CChar>?
        try XGBoostError.check(XGBoosterSaveModelToBuffer(h, "{\"format\":\"json\"}", &len, &out), "serialise")
        var copy: BoosterHandle?
        try XGBoostError.check(XGBoosterCreate(nil, 0, &copy), "create")
        do {
            try XGBoostError.check(XGBoosterLoadModelFromBuffer(copy, out, len), "load")
        } catch {
            XGBoosterFree(copy)
            throw error
        }
        return Booster(handle: copy)
    }

    private static func linear(_ h: BoosterHandle?) -> Bool {
        var len: bst_ulong = 0
        var out: UnsafePointer<CChar>?
        guard XGBoosterSaveJsonConfig(h, &len, &out) == 0, let out else { return false }
        return String(cString: out).contains("\"name\":\"gblinear\"")
    }

    /// Takes ownership of a handle.
    init(handle h: BoosterHandle?) {
        var n: bst_ulong = 0
        XGBoosterGetNumFeature(h, &n)
        featureCount = Int(n)
        isLinear = Self.linear(h)
        handle = h
    }

    deinit {
        XGBoosterFree(handle)
    }

    private func withHandle<T>(_ body: (BoosterHandle?) throws(XGBoostError) -> T) throws(XGBoostError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(handle)
    }

    /// Raw margins (log-odds for `binary:logistic`) of `rows` rows of `columns` features.
    public func margins(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int) throws(XGBoostError) -> [Float] {
        try predict(values, rows: rows, columns: columns, type: 1)
    }

    /// XGBoost's own transformed output (probabilities for `binary:logistic`): the reference the
    /// ensemble's arithmetic is tested against.
    public func probabilities(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int) throws(XGBoostError) -> [Float] {
        try predict(values, rows: rows, columns: columns, type: 0)
    }

    private func predict(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int, type: Int) throws(XGBoostError) -> [Float] {
        guard rows > 0 else { return [] }
        if isLinear { return try predictFromMatrix(values, rows: rows, columns: columns, type: type, outputs: rows) }
        let array = "{\"data\":[\(UInt(bitPattern: values.baseAddress)),true],\"shape\":[\(rows),\(columns)],\"typestr\":\"<f4\",\"version\":3}"
        let config = "{\"type\":\(type),\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,\"strict_shape\":false,\"cache_id\":0,\"missing\":NaN}"
        return try withHandle { h throws(XGBoostError) -> [Float] in
            var shape: UnsafePointer<bst_ulong>?
            var dim: bst_ulong = 0
            var out: UnsafePointer<Float>?
            try XGBoostError.check(XGBoosterPredictFromDense(h, array, config, nil, &shape, &dim, &out), "predict")
            guard let out else { throw XGBoostError(operation: "predict", message: "no output") }
            return Array(UnsafeBufferPointer(start: out, count: rows))
        }
    }

    /// Approximate (Saabas) contributions per feature, last column the bias: `rows × (columns + 1)`.
    /// Exact TreeSHAP costs ~50× more per row, too much for the hot path; the ranking of the top
    /// features, which is what reason codes need, rarely differs.
    public func contributions(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int) throws(XGBoostError) -> [Float] {
        try predictFromMatrix(values, rows: rows, columns: columns, type: 3, outputs: rows * (columns + 1))
    }

    private func predictFromMatrix(
        _ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int, type: Int, outputs: Int
    ) throws(XGBoostError) -> [Float] {
        guard rows > 0 else { return [] }
        var dm: DMatrixHandle?
        try XGBoostError.check(XGDMatrixCreateFromMat(values.baseAddress, bst_ulong(rows), bst_ulong(columns), .nan, &dm), "DMatrix")
        defer { XGDMatrixFree(dm) }
        let config = "{\"type\":\(type),\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,\"strict_shape\":false}"
        return try withHandle { h throws(XGBoostError) -> [Float] in
            var shape: UnsafePointer<bst_ulong>?
            var dim: bst_ulong = 0
            var out: UnsafePointer<Float>?
            try XGBoostError.check(XGBoosterPredictFromDMatrix(h, dm, config, &shape, &dim, &out), "predict")
            guard let out else { throw XGBoostError(operation: "predict", message: "no output") }
            return Array(UnsafeBufferPointer(start: out, count: outputs))
        }
    }

    /// Importance per feature index: `total_gain` for trees (the loss reduction of every split on
    /// the feature), `weight` (the coefficient) for a linear booster. Features never used are absent.
    public func importance(type: String = "total_gain") throws(XGBoostError) -> [Int: Double] {
        try withHandle { h throws(XGBoostError) -> [Int: Double] in
            var n: bst_ulong = 0, dim: bst_ulong = 0
            var names: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var shape: UnsafePointer<bst_ulong>?
            var scores: UnsafePointer<Float>?
            try XGBoostError.check(XGBoosterFeatureScore(h, "{\"importance_type\":\"\(type)\"}", &n, &names, &dim, &shape, &scores), "importance")
            guard let names, let scores else { return [:] }
            // Without feature names XGBoost calls them f0, f1, …; a linear booster gives one score per feature.
            var out: [Int: Double] = [:]
            for i in 0..<Int(n) {
                guard let c = names[i], let index = Int(String(cString: c).dropFirst()) else { continue }
                out[index, default: 0] += abs(Double(scores[i]))
            }
            return out
        }
    }

    /// Saves the model; the format follows the extension (`.json` or `.ubj`).
    public func save(path: String) throws(XGBoostError) {
        try withHandle { h throws(XGBoostError) in try XGBoostError.check(XGBoosterSaveModel(h, path), "save \(path)") }
    }

    /// The model as XGBoost's JSON, which the native evaluator reads.
    public func json() throws(XGBoostError) -> String {
        try withHandle { h throws(XGBoostError) -> String in
            var len: bst_ulong = 0
            var out: UnsafePointer<CChar>?
            try XGBoostError.check(XGBoosterSaveModelToBuffer(h, "{\"format\":\"json\"}", &len, &out), "serialise")
            return String(decoding: UnsafeRawBufferPointer(start: out, count: Int(len)), as: UTF8.self)
        }
    }
}
