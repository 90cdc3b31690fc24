import Glibc
import VigilCore

/// Where and how an ``InMemoryVelocityStore`` journals what it records, so that a restarted
/// process rebuilds exactly the state it had (see `docs/features.md`, "The journal").
public struct JournalConfiguration: Sendable, Equatable {
    /// The journal's directory (created if missing). One store per directory.
    public var directory: String
    /// A segment is closed and a new one started past this size. Default: 64 MiB.
    public var segmentBytes: Int = 64 << 20
    /// `fdatasync` after every append: survives a machine crash, not only a process crash, at the
    /// cost of a disk flush per batch. Default: false (a killed process loses nothing either way:
    /// what `write` returned is in the kernel's page cache).
    public var sync = false
    /// Identifies the keyed hash the entity keys were made with (``KeyedHasher/check``): a journal
    /// written under another secret is refused instead of silently matching nothing.
    public var keyCheck: UInt64

    public init(directory: String, keyCheck: UInt64) {
        self.directory = directory
        self.keyCheck = keyCheck
    }
}

/// An append-only log of a store's input: each batch of events (as the store received it,
/// redeliveries included) and each set of labels, in the order the store applied them. Replaying
/// it through the store's own recording path rebuilds the same events with the same arrival
/// order, so redeliveries after a restart get the features they got the first time.
///
/// Records are written before the store applies them, with one `write` each: a process killed at
/// any point leaves a log that ends with whole records, or with one torn record that was never
/// applied (its batch got no verdict) and is cut off at the next open. Segments whose events are
/// all older than the store's retention plus lateness can no longer change a feature and are
/// deleted, which bounds the journal by the data the store keeps.
final class StoreJournal {
    enum Record {
        case batch(EventBatch)
        case labels([(id: UInt64, fraud: Bool)])
    }

    struct Segment {
        let path: String
        let sequence: Int
        /// The newest event time in the segment's batches.
        var newest: Int64 = .min
    }

    static let magic: [UInt8] = Array("VIGILJ01".utf8)
    static let headerBytes = 16
    static let recordHeaderBytes = 12
    /// Checksums records (not a secret: any fixed key).
    static let checksum = KeyedHasher(k0: 0x6a6f_7572_6e61_6c30, k1: 0x6a6f_7572_6e61_6c31)

    let configuration: JournalConfiguration
    let plan: FeaturePlan
    let fingerprint: UInt64
    private(set) var segments: [Segment] = []
    private var fd: Int32 = -1
    /// Holds an exclusive `flock` on the directory's `LOCK` file while the journal is open: a
    /// second process on the same directory would interleave its records with ours.
    private var lock: Int32 = -1
    private var size = 0
    private var buffer: [UInt8] = []
    /// Set when a failed append could not be undone: every later append fails rather than
    /// leaving a hole in the log.
    private var broken: String?

    /// Opens the journal, handing every record to `replay` in order, and leaves the last segment
    /// open for appending (a torn last record is cut off).
    /// - Throws: the file and byte offset of anything that is not a torn tail: a foreign or
    ///   corrupt file, a journal of another feature plan or hash secret, an I/O error.
    init(configuration: JournalConfiguration, plan: FeaturePlan, replay: (Record) -> Void) throws(ConfigurationError) {
        self.configuration = configuration
        self.plan = plan
        fingerprint = Self.fingerprint(plan: plan, keyCheck: configuration.keyCheck)
        let dir = configuration.directory
        if mkdir(dir, 0o700) != 0, errno != EEXIST { throw Self.failure(dir, "cannot create the journal directory: \(Self.errorText())") }
        lock = open(dir + "/LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw Self.failure(dir + "/LOCK", "cannot open: \(Self.errorText())") }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let e = Self.errorText()
            close(lock)
            throw Self.failure(dir, busy ? "another store holds this journal (one instance per journal directory)" : "cannot lock: \(e)")
        }
        guard let handle = opendir(dir) else { throw Self.failure(dir, "cannot read the journal directory: \(Self.errorText())") }
        var found: [Segment] = []
        while let entry = readdir(handle) {
            // Read in place: a record is only `d_reclen` bytes, so copying the whole 256-byte
            // `d_name` read past it (memcheck: a string made of undefined bytes).
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            guard name.hasSuffix(".journal"), let n = Int(name.dropLast(8)) else { continue }
            found.append(Segment(path: dir + "/" + name, sequence: n))
        }
        closedir(handle)
        segments = found.sorted { $0.sequence < $1.sequence }
        // A process killed while creating a segment can leave it without its whole header.
        if let last = segments.last, let bytes = try? Self.read(last.path), bytes.count < Self.headerBytes,
           bytes.elementsEqual(Self.magic.prefix(bytes.count)) {
            unlink(last.path)
            segments.removeLast()
        }
        for k in segments.indices {
            let isLast = k == segments.count - 1
            let bytes = try Self.read(segments[k].path)
            var offset = try checkHeader(bytes, segments[k].path)
            while offset < bytes.count {
                guard let (record, end) = try decodeRecord(bytes, at: offset, path: segments[k].path, isLast: isLast) else {
                    // A torn tail: the process died inside this record's write, before applying it.
                    guard truncate(segments[k].path, off_t(offset)) == 0 else {
                        throw Self.failure(segments[k].path, "cannot cut off the torn record at byte \(offset): \(Self.errorText())")
                    }
                    break
                }
                segments[k].newest = max(segments[k].newest, Self.newest(record))
                replay(record)
                offset = end
            }
        }
        if segments.isEmpty {
            try startSegment(sequence: 1)
        } else {
            let last = segments[segments.count - 1].path
            fd = open(last, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw Self.failure(last, "cannot open for appending: \(Self.errorText())") }
            size = Int(lseek(fd, 0, SEEK_END))
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
        close(lock)  // releases the lock
    }

    var path: String { segments.last?.path ?? configuration.directory }

    /// Appends a batch; on failure nothing is appended and the store must not apply the batch.
    func append(_ batch: EventBatch) throws(StoreError) {
        beginRecord(kind: 1)
        put(UInt32(batch.count))
        for a in [batch.ids, batch.keys, batch.tracked] { putArray(a) }
        putArray(batch.times)
        for a in [batch.amounts, batch.lats, batch.lons] { putArray(a) }
        putArray(batch.filterBits)
        try commitRecord(newest: batch.times.max() ?? .min)
    }

    /// Appends labels (only those that match a recorded transaction are worth journaling).
    func append(labels: [(id: UInt64, fraud: Bool)]) throws(StoreError) {
        beginRecord(kind: 2)
        put(UInt32(labels.count))
        for l in labels {
            put(l.id)
            put(UInt8(l.fraud ? 1 : 0))
        }
        try commitRecord(newest: .min)
    }

    /// Starts a new segment once the current one is full, and deletes the closed segments whose
    /// events are all older than `cutoff` (the store's newest time minus retention and lateness).
    func maintain(cutoff: Int64) throws(StoreError) {
        guard size >= configuration.segmentBytes else { return }
        do {
            try startSegment(sequence: (segments.last?.sequence ?? 0) + 1)
        } catch {
            throw StoreError(.unavailable, error.description)
        }
        while segments.count > 1, segments[0].newest < cutoff {
            unlink(segments[0].path)
            segments.removeFirst()
        }
    }

    /// Bytes on disk over every segment.
    var bytes: Int {
        segments.dropLast().reduce(size) { total, s in
            var st = stat()
            return total + (stat(s.path, &st) == 0 ? Int(st.st_size) : 0)
        }
    }

    // MARK: - Writing

    private func startSegment(sequence: Int) throws(ConfigurationError) {
        let name = String(sequence)
        let p = configuration.directory + "/" + String(repeating: "0", count: max(0, 12 - name.count)) + name + ".journal"
        let next = open(p, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
        guard next >= 0 else { throw Self.failure(p, "cannot create: \(Self.errorText())") }
        var header = Self.magic
        withUnsafeBytes(of: fingerprint.littleEndian) { header.append(contentsOf: $0) }
        guard Self.writeAll(next, header) else {
            let e = Self.errorText()
            close(next)
            unlink(p)
            throw Self.failure(p, "cannot write the header: \(e)")
        }
        if fd >= 0 { close(fd) }
        fd = next
        size = header.count
        segments.append(Segment(path: p, sequence: sequence))
        Self.syncDirectory(configuration.directory)
    }

    private func beginRecord(kind: UInt8) {
        buffer.removeAll(keepingCapacity: true)
        buffer.append(contentsOf: repeatElement(0, count: Self.recordHeaderBytes))
        buffer.append(kind)
    }

    private func put<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) }
    }

    /// Columns are written in the machine's byte order (little-endian on every platform Vigil
    /// builds for; the header's magic would not match a big-endian reader's expectations).
    private func putArray<T>(_ a: [T]) {
        a.withUnsafeBytes { buffer.append(contentsOf: $0) }
    }

    private func commitRecord(newest: Int64) throws(StoreError) {
        if let broken { throw StoreError(.unavailable, broken) }
        let payload = buffer.count - Self.recordHeaderBytes
        let sum = buffer.withUnsafeBufferPointer { Self.checksum.hash(bytes: UnsafeBufferPointer(rebasing: $0[Self.recordHeaderBytes...])) }
        buffer.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(payload).littleEndian, toByteOffset: 0, as: UInt32.self)
            b.storeBytes(of: sum.littleEndian, toByteOffset: 4, as: UInt64.self)
        }
        guard Self.writeAll(fd, buffer), !configuration.sync || fdatasync(fd) == 0 else {
            let e = "journal \(path): \(Self.errorText())"
            // Undo a partial write so the log keeps only whole records.
            if ftruncate(fd, off_t(size)) != 0 { broken = e + " (and the partial record could not be cut off)" }
            throw StoreError(.unavailable, e)
        }
        size += buffer.count
        segments[segments.count - 1].newest = max(segments[segments.count - 1].newest, newest)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(fd, b.baseAddress! + done, b.count - done)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return false }
                done += n
            }
            return true
        }
    }

    private static func syncDirectory(_ dir: String) {
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 {
            fsync(d)
            close(d)
        }
    }

    // MARK: - Reading

    private static func read(_ path: String) throws(ConfigurationError) -> [UInt8] {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { throw failure(path, "cannot open: \(errorText())") }
        defer { close(f) }
        var st = stat()
        guard fstat(f, &st) == 0 else { throw failure(path, "cannot stat: \(errorText())") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(f, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw failure(path, "cannot read at byte \(done): \(n == 0 ? "file shrank" : errorText())") }
            done += n
        }
        return bytes
    }

    private func checkHeader(_ bytes: [UInt8], _ path: String) throws(ConfigurationError) -> Int {
        guard bytes.count >= Self.headerBytes, Array(bytes[0..<8]) == Self.magic else {
            throw Self.failure(path, "not a Vigil store journal (bad header); move it away")
        }
        let written = Self.load(UInt64.self, bytes, 8)
        guard written == fingerprint else {
            throw Self.failure(path, "written for another feature spec or hash secret (fingerprint \(String(written, radix: 16)), this store \(String(fingerprint, radix: 16))); point store.journal elsewhere or move it away to start empty")
        }
        return Self.headerBytes
    }

    /// The record at `offset` and where the next one starts, or nil for a torn record at the end
    /// of the last segment.
    private func decodeRecord(_ bytes: [UInt8], at offset: Int, path: String, isLast: Bool) throws(ConfigurationError) -> (Record, Int)? {
        func corrupt(_ why: String) -> ConfigurationError { Self.failure(path, "corrupt record at byte \(offset): \(why)") }
        guard bytes.count - offset >= Self.recordHeaderBytes else {
            if isLast { return nil }
            throw corrupt("truncated header")
        }
        let length = Int(Self.load(UInt32.self, bytes, offset))
        let sum = Self.load(UInt64.self, bytes, offset + 4)
        let start = offset + Self.recordHeaderBytes, end = start + length
        guard end <= bytes.count else {
            if isLast { return nil }
            throw corrupt("\(length) bytes announced, \(bytes.count - start) present")
        }
        let actual = bytes.withUnsafeBufferPointer { Self.checksum.hash(bytes: UnsafeBufferPointer(rebasing: $0[start..<end])) }
        guard actual == sum else {
            // Only the very last record can be torn (a process dies inside one write); a bad
            // checksum anywhere else is damage, and skipping it would change the features.
            if isLast, end == bytes.count { return nil }
            throw corrupt("checksum mismatch")
        }
        var r = Reader(bytes: bytes, offset: start, end: end)
        guard let kind: UInt8 = r.next() else { throw corrupt("empty") }
        switch kind {
        case 1:
            guard let n32: UInt32 = r.next() else { throw corrupt("short batch") }
            let n = Int(n32)
            var b = EventBatch(plan: plan, capacity: n)
            guard let ids: [UInt64] = r.array(n), let keys: [UInt64] = r.array(n * b.entityCount),
                  let tracked: [UInt64] = r.array(n * b.trackedTotal), let times: [Int64] = r.array(n),
                  let amounts: [Double] = r.array(n), let lats: [Double] = r.array(n), let lons: [Double] = r.array(n),
                  let bits: [UInt8] = r.array(n * b.entityCount), r.offset == end
            else { throw corrupt("batch of \(n) does not match the plan's layout") }
            b.ids = ids
            b.keys = keys
            b.tracked = tracked
            b.times = times
            b.amounts = amounts
            b.lats = lats
            b.lons = lons
            b.filterBits = bits
            return (.batch(b), end)
        case 2:
            guard let n: UInt32 = r.next() else { throw corrupt("short labels") }
            var labels: [(id: UInt64, fraud: Bool)] = []
            labels.reserveCapacity(Int(n))
            for _ in 0..<n {
                guard let id: UInt64 = r.next(), let f: UInt8 = r.next() else { throw corrupt("short labels") }
                labels.append((id, f != 0))
            }
            guard r.offset == end else { throw corrupt("trailing bytes") }
            return (.labels(labels), end)
        default:
            throw corrupt("unknown kind \(kind)")
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset: Int
        let end: Int

        mutating func next<T: FixedWidthInteger>() -> T? {
            guard end - offset >= MemoryLayout<T>.size else { return nil }
            defer { offset += MemoryLayout<T>.size }
            return StoreJournal.load(T.self, bytes, offset)
        }

        mutating func array<T>(_ n: Int) -> [T]? {
            let length = n * MemoryLayout<T>.stride
            guard n >= 0, end - offset >= length else { return nil }
            defer { offset += length }
            return bytes.withUnsafeBytes { b in
                [T](unsafeUninitializedCapacity: n) { out, initialized in
                    UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + length)]))
                    initialized = n
                }
            }
        }
    }

    private static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    private static func newest(_ r: Record) -> Int64 {
        switch r {
        case .batch(let b): b.times.max() ?? .min
        // A label only matters while its transaction is retained. The transaction was recorded
        // before the label, in the same segment or an earlier one, and segments are deleted
        // oldest first: the label's segment goes only after the transaction's, once it is old.
        case .labels: .min
        }
    }

    /// What a journal must match to be replayed: the entities, what they track, the filters and
    /// the feature names, and the hash key.
    static func fingerprint(plan: FeaturePlan, keyCheck: UInt64) -> UInt64 {
        var text = "\(plan.schema.hash)|\(keyCheck)"
        for e in plan.entities { text += "|\(e.field.rawValue):\(e.tracked.map(\.rawValue).joined(separator: ","))/\(e.filterCount)" }
        for a in plan.spec.aggregates { text += "|\(a.entity)?\(a.filter ?? "")" }
        return checksum.hash(text)
    }

    private static func failure(_ path: String, _ message: String) -> ConfigurationError {
        ConfigurationError(file: path, line: nil, message: message)
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
