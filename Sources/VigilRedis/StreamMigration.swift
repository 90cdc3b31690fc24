import VigilFeatures

extension RedisVelocityStore {
    /// What ``migrateStreams(progress:)`` did.
    public struct MigrationReport: Sendable {
        /// Entity logs converted, and their entries.
        public var logs = 0, entries = 0
        /// Old logs left as they were, because the entity already has a log in the new layout
        /// (a daemon wrote to it before the migration ran).
        public var skipped = 0
    }

    /// Converts entity logs kept as Redis streams (the layout before 2026-12-03: `P:x:{E:H}`,
    /// one entry per batch with field `e` or `l`) into the current one (`P:x:{E:H}:0`, one frame
    /// per entry, the same bytes), keeping each log's TTL, and deletes the streams. Run it with
    /// every daemon of the prefix stopped; on Redis Cluster, against each master in turn (a
    /// `redis://` URL naming it). Idempotent: a stream already converted is gone.
    public func migrateStreams(progress: (MigrationReport) -> Void = { _ in }) throws(StoreError) -> MigrationReport {
        var report = MigrationReport()
        let pattern = Array("\(configuration.prefix):x:{*}".utf8)
        let ttl = UInt64(plan.retention + allowedLateness)
        var cursor: [UInt8] = Self.zero
        repeat {
            let reply = try command(bytes: [Array("SCAN".utf8), cursor, Array("MATCH".utf8), pattern, Array("COUNT".utf8), Array("500".utf8),
                                            Array("TYPE".utf8), Array("stream".utf8)])
            guard case .array(let parts) = reply, parts.count == 2, case .string(let next) = parts[0], case .array(let keys) = parts[1] else {
                throw StoreError(.protocolError, "SCAN: \(reply.errorMessage ?? "\(reply)")")
            }
            cursor = next
            for case .string(let key) in keys {
                let (frames, entries) = try streamFrames(key)
                let remaining = try command(bytes: [Array("PTTL".utf8), key])
                let keep: UInt64 = if case .integer(let ms) = remaining, ms > 0 { UInt64(ms) } else { ttl }
                let set = try command(bytes: [Self.SET, key + Array(":0".utf8), frames, Self.PX, Array(String(keep).utf8), Self.NX])
                if let m = set.errorMessage { throw StoreError(.protocolError, "SET: \(m)") }
                if set == .null {
                    report.skipped += 1
                    continue
                }
                _ = try command(bytes: [Array("DEL".utf8), key])
                report.logs += 1
                report.entries += entries
            }
            progress(report)
        } while cursor != Self.zero
        return report
    }

    /// One stream's entries as log frames, in order, and how many there were.
    private func streamFrames(_ key: [UInt8]) throws(StoreError) -> (frames: [UInt8], entries: Int) {
        var frames: [UInt8] = [], entries = 0
        var from = Array("-".utf8)
        while true {
            let reply = try command(bytes: [Array("XRANGE".utf8), key, from, Array("+".utf8), Array("COUNT".utf8), Array("1000".utf8)])
            guard case .array(let items) = reply else { throw StoreError(.protocolError, "XRANGE: \(reply.errorMessage ?? "\(reply)")") }
            for item in items {
                guard case .array(let pair) = item, pair.count == 2, case .string(let id) = pair[0], case .array(let fields) = pair[1],
                      fields.count == 2, case .string(let field) = fields[0], case .string(let value) = fields[1], field.count == 1,
                      field[0] == Frame.events || field[0] == Frame.labels
                else { throw StoreError(.protocolError, "\(String(decoding: key, as: UTF8.self)): not an entity stream entry") }
                Frame.write(field[0], value, to: &frames)
                entries += 1
                from = Array("(".utf8) + id
            }
            if items.count < 1000 { return (frames, entries) }
        }
    }
}
