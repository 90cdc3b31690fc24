import Foundation
import Testing
@testable import VigilModels

@Suite struct NativeForestTests {
    /// Random data with missing values, random labels tied to a few columns.
    func data(rows: Int, columns: Int, missing: Float, seed: UInt64) -> Trainer.Dataset {
        var s = seed
        func unit() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(s >> 40) / Float(1 << 24)
        }
        var values: [Float] = []
        var labels: [Float] = []
        for _ in 0..<rows {
            var row = (0..<columns).map { _ in unit() * 100 - 20 }
            labels.append(row[0] + row[1 % columns] * 0.5 > 60 || unit() < 0.05 ? 1 : 0)
            for c in 0..<columns where unit() < missing { row[c] = .nan }
            values += row
        }
        return Trainer.Dataset(values: values, rows: rows, columns: columns, labels: labels)
    }

    func expectEqual(_ booster: Booster, _ random: Trainer.Dataset) throws {
        let native = try NativeForest(booster: booster)
        // Half the cells set to one of the model's own thresholds for that feature: the values
        // where `<` and `<=` part ways, which random data never hits.
        var thresholds = [[Float]](repeating: [], count: random.columns)
        for n in native.nodes where n.feature >= 0 { thresholds[Int(n.feature & ~NativeForest.defaultLeftBit)].append(n.value) }
        var d = random
        var k = 0
        for i in d.values.indices where i % 2 == 0 && !d.values[i].isNaN {
            let t = thresholds[i % d.columns]
            if !t.isEmpty {
                d.values[i] = t[k % t.count]
                k += 1
            }
        }
        #expect(native.featureCount == d.columns)
        try d.values.withUnsafeBufferPointer { v in
            let reference = try booster.margins(v, rows: d.rows, columns: d.columns)
            let probabilities = try booster.probabilities(v, rows: d.rows, columns: d.columns)
            let ours = native.margins(v, rows: d.rows)
            let ourProbabilities = native.predictions(v, rows: d.rows)
            var worst: Float = 0
            for r in 0..<d.rows {
                worst = max(worst, abs(ours[r] - reference[r]), abs(ourProbabilities[r] - probabilities[r]))
            }
            #expect(worst <= 1e-6, "largest difference \(worst)")
            // Contributions (reason codes) equal to the C API's, bit for bit.
            #expect(native.explains)
            let nativeContributions = native.contributions(v, rows: d.rows)
            let capiContributions = try booster.contributions(v, rows: d.rows, columns: d.columns)
            #expect(nativeContributions.count == capiContributions.count)
            let differing = zip(nativeContributions, capiContributions).enumerated().filter { $0.element.0 != $0.element.1 }
            #expect(differing.isEmpty, "\(differing.count) of \(capiContributions.count) contributions differ, first \(differing.prefix(3).map { "#\($0.offset): \($0.element.0) vs \($0.element.1)" })")
            // The precomputed path credits and the node walk (deeper forests) agree bit for bit.
            let walked = native.pointerContributions(v, rows: d.rows)
            #expect(zip(walked, nativeContributions).allSatisfy { $0.bitPattern == $1.bitPattern } && walked.count == nativeContributions.count)
            // Batch size never changes a row's score.
            for r in stride(from: 0, to: d.rows, by: 97) {
                let one = native.margins(UnsafeBufferPointer(rebasing: v[(r * d.columns)..<((r + 1) * d.columns)]), rows: 1)
                #expect(one[0] == ours[r])
            }
        }
        // Infinite values, which the complete layout's missing-resolved rows use for NaN, still
        // take XGBoost's way (the node walk's, NaN tested apart); the vector walk (where the
        // processor has it) and the scalar one's blocks of 16, 4 and 1 rows, bit for bit.
        var extreme = d
        for i in extreme.values.indices where i % 7 == 0 { extreme.values[i] = i % 14 == 0 ? .infinity : -.infinity }
        extreme.values.withUnsafeBufferPointer { v in
            #expect(!native.complete.isEmpty)
            // 647: whole chunks of 64, one block of 4, 3 alone; 37: two vectors (a part chunk).
            for rows in [d.rows, 647, 37, 1] {
                let walked = native.pointerMargins(v, rows: rows)
                for wide in NativeForest.wideAvailable ? [true, false] : [false] {
                    let complete = native.completeMargins(v, rows: rows, wide: wide)
                    #expect(zip(complete, walked).allSatisfy { $0.bitPattern == $1.bitPattern } && complete.count == rows, "\(rows) rows, wide \(wide)")
                }
            }
        }
    }

    /// The vector walk (C) reads the splits as 8 bytes each: the threshold, then the column.
    @Test func splitLayoutIsWhatTheVectorWalkReads() {
        #expect(MemoryLayout<NativeForest.Split>.stride == 8)
        #expect(MemoryLayout<NativeForest.Split>.offset(of: \.threshold) == 0)
        #expect(MemoryLayout<NativeForest.Split>.offset(of: \.column) == 4)
    }

    @Test(arguments: [
        (1, 0.0, ["max_depth": "1"]),
        (2, 0.2, ["max_depth": "3", "eta": "0.3"]),
        (3, 0.5, ["max_depth": "8", "eta": "0.05", "min_child_weight": "0"]),
        (4, 0.1, ["max_depth": "6", "subsample": "0.7", "colsample_bynode": "0.5", "base_score": "0.2"]),
        (5, 0.3, ["max_depth": "4", "grow_policy": "lossguide", "max_leaves": "20", "tree_method": "hist"]),
        (6, 0.9, ["max_depth": "5", "tree_method": "exact"]),
    ])
    func randomModelsMatchTheCAPI(seed: UInt64, missing: Float, params: [String: String]) throws {
        let train = data(rows: 1500, columns: 7 + Int(seed), missing: missing, seed: seed)
        let r = try Trainer.train(train: train, validation: train, params: params.merging(["nthread": "1"]) { $1 },
                                  rounds: 40 + Int(seed) * 10, earlyStopping: 1000)
        try expectEqual(r.booster, data(rows: 700, columns: train.columns, missing: missing, seed: seed + 100))
    }

    @Test func shippedBundleMatchesTheCAPI() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let manifest = try Manifest.load(directory: root + "/models/default")
        for m in manifest.members {
            let booster = try Booster(path: root + "/models/default/" + m.file)
            try expectEqual(booster, data(rows: 2000, columns: booster.featureCount, missing: 0.4, seed: 42))
        }
        let ensemble = try Ensemble(directory: root + "/models/default", evaluator: .native)
        #expect(ensemble.isNative)
        #expect(try !Ensemble(directory: root + "/models/default", evaluator: .capi).isNative)
    }

    @Test func unsupportedModelsAreRefused() {
        #expect(throws: XGBoostError.self) { try NativeForest(json: Data("{}".utf8)) }
        let linear = #"{"learner":{"learner_model_param":{"base_score":"5E-1","num_class":"0","num_feature":"2"},"gradient_booster":{"name":"gblinear","model":{}},"objective":{"name":"binary:logistic"}}}"#
        #expect { try NativeForest(json: Data(linear.utf8)) } throws: { "\($0)".contains("gbtree") }
    }
}
