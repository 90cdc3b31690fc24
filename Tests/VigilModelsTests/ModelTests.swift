import Foundation
import Testing
@testable import VigilModels

/// A small separable problem with missing values, trained through the C API.
func trainedBooster(rows: Int = 600, columns: Int = 5, seed: UInt64 = 3) throws -> (Booster, [Float]) {
    var state = seed
    func unit() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24)
    }
    var values: [Float] = []
    var labels: [Float] = []
    for _ in 0..<rows {
        var row = (0..<columns).map { _ in unit() }
        labels.append(row[0] + 0.5 * row[1] > 0.8 ? 1 : 0)
        if unit() < 0.1 { row[2] = .nan }
        values += row
    }
    let data = Trainer.Dataset(values: values, rows: rows, columns: columns, labels: labels)
    let r = try Trainer.train(train: data, validation: data, params: ["max_depth": "3", "nthread": "1"], rounds: 25, earlyStopping: 100)
    return (r.booster, values)
}

func tempDir() throws -> String {
    let d = NSTemporaryDirectory() + "vigil-model-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

func writeBundle(_ booster: Booster, names: [String], calibration: Calibration = .none, members: Int = 1) throws -> String {
    let d = try tempDir()
    try booster.save(path: d + "/m.json")
    let manifest = Manifest(
        name: "t", version: "1", created: "now", features: .init(names: names, hash: "h1", spec: "features.yaml"),
        members: (0..<members).map { .init(name: "m\($0)", file: "m.json", weight: Double($0 + 1)) }, calibration: calibration,
        provenance: [:], metrics: [:])
    try manifest.write(directory: d)
    return d
}

@Suite struct ModelTests {
    let names = ["a", "b", "c", "d", "e"]

    @Test func ensembleEqualsTheCAPI() throws {
        let (booster, values) = try trainedBooster()
        let dir = try writeBundle(booster, names: names, members: 2)
        let ensemble = try Ensemble(directory: dir, expecting: FeatureSchemaDescription(names: names, hash: "h1"))
        let scores = ensemble.score(values, rows: 600)
        let margins = try values.withUnsafeBufferPointer { try booster.margins($0, rows: 600, columns: 5) }
        // XGBoost's own probability output (type 0) through a DMatrix, as the reference.
        let reference = try referenceProbabilities(booster, values, rows: 600)
        for r in 0..<600 {
            // Two copies of one member, weights 1 and 2: the weighted mean margin is the member's margin.
            #expect(abs(scores.margins[r] - Double(margins[r])) < 1e-6)
            #expect(abs(scores.probabilities[r] - Double(reference[r])) < 1e-6)
            #expect(abs(scores.memberProbabilities[1][r] - Double(reference[r])) < 1e-6)
        }
        #expect(!scores.degraded)
    }

    @Test func batchAndSingleRowAgree() throws {
        let (booster, values) = try trainedBooster()
        let batch = try values.withUnsafeBufferPointer { try booster.margins($0, rows: 600, columns: 5) }
        for r in stride(from: 0, to: 600, by: 37) {
            let one = try Array(values[(r * 5)..<(r * 5 + 5)]).withUnsafeBufferPointer { try booster.margins($0, rows: 1, columns: 5) }
            #expect(one[0] == batch[r])
        }
    }

    @Test func schemaMismatchIsALoadError() throws {
        let (booster, _) = try trainedBooster()
        let dir = try writeBundle(booster, names: names)
        #expect { try Ensemble(directory: dir, expecting: FeatureSchemaDescription(names: ["a", "b", "c", "d", "x"], hash: "h2")) } throws: { e in
            "\(e)".contains("feature schema mismatch") && "\(e)".contains("manifest.json") && "\(e)".contains("x")
        }
        #expect { try Ensemble(directory: dir, expecting: FeatureSchemaDescription(names: ["b", "a", "c", "d", "e"], hash: "h1")) } throws: { e in
            "\(e)".contains("another order")
        }
    }

    @Test func corruptBundlesFailWithTheFile() throws {
        let (booster, _) = try trainedBooster()
        let dir = try writeBundle(booster, names: names)
        try "{ not a model".write(toFile: dir + "/m.json", atomically: true, encoding: .utf8)
        #expect { try Ensemble(directory: dir) } throws: { "\($0)".contains("m.json") && "\($0)".contains("member 'm0'") }
        try "{\"format\": 1}".write(toFile: dir + "/manifest.json", atomically: true, encoding: .utf8)
        #expect { try Ensemble(directory: dir) } throws: { "\($0)".contains("manifest.json") && "\($0)".contains("missing") }
        #expect { try Ensemble(directory: "/nonexistent") } throws: { "\($0)".contains("cannot read") }
        // A member with the wrong number of features.
        let wrong = try writeBundle(booster, names: ["a", "b", "c"])
        #expect { try Ensemble(directory: wrong) } throws: { "\($0)".contains("takes 5 features") }
    }

    @Test func calibrationFits() {
        // Margins whose true probability is sigmoid(2m - 1): Platt should find a ≈ 2, b ≈ -1.
        var margins: [Double] = []
        var labels: [Bool] = []
        var s: UInt64 = 1
        for i in 0..<20_000 {
            let m = Double(i % 200) / 25 - 4
            s = s &* 6364136223846793005 &+ 1
            margins.append(m)
            labels.append(Double(s >> 11) / Double(1 << 53) < sigmoid(2 * m - 1))
        }
        guard case .platt(let a, let b) = Calibration.fitPlatt(margins: margins, labels: labels) else {
            Issue.record("no Platt fit")
            return
        }
        #expect(abs(a - 2) < 0.15 && abs(b + 1) < 0.15)
        // A slice the margin separates perfectly: a finite slope, no probability of exactly 0 or 1.
        guard case .platt(let sa, let sb) = Calibration.fitPlatt(margins: [-3, -2, -1, 1, 2, 3], labels: [false, false, false, true, true, true]) else {
            Issue.record("no Platt fit")
            return
        }
        #expect(sa.isFinite && sa < 10)
        #expect(sigmoid(sa * -3 + sb) > 0 && sigmoid(sa * 3 + sb) < 1)
        let iso = Calibration.fitIsotonic(margins: margins, labels: labels)
        #expect(iso.probability(margin: -4) < 0.01 && iso.probability(margin: 3.9) > 0.95)
        var last = -1.0
        for m in stride(from: -5.0, through: 5, by: 0.1) {
            let p = iso.probability(margin: m)
            #expect(p >= last)
            last = p
        }
    }

    func referenceProbabilities(_ booster: Booster, _ values: [Float], rows: Int) throws -> [Float] {
        // The contributions API agrees with the margins: SHAP values sum to the margin.
        let contributions = try values.withUnsafeBufferPointer { try booster.contributions($0, rows: rows, columns: 5) }
        let margins = try values.withUnsafeBufferPointer { try booster.margins($0, rows: rows, columns: 5) }
        for r in 0..<rows {
            let sum = contributions[(r * 6)..<(r * 6 + 6)].reduce(0, +)
            #expect(abs(sum - margins[r]) < 1e-4)
        }
        return try values.withUnsafeBufferPointer { try booster.probabilities($0, rows: rows, columns: 5) }
    }
}
