/// Converts a table row or a MongoDB document into a `RecordState` whose fields are in
/// canonical text, and back into what each side stores.
///
/// Canonical text is "the PostgreSQL text of the value as the column's mapping produces it",
/// so a row and a document holding the same values compare equal (Mongo's `5.0` double in a
/// Number column equals PostgreSQL's `5`; `12:00:00` equals `12:00:00.000`).
public struct RecordCodec: Sendable {
    /// Fields that describe a change rather than the record; they never make records differ.
    public static let metadataFields: Set<String> = ["externalId", "updatedAt", "source", "version"]

    public let mapper: RowMapper
    /// Synced content columns: the mapper's columns minus key and metadata.
    public let contentColumns: [Column]
    private let updatedAtColumn: Column?

    public init(mapper: RowMapper) {
        self.mapper = mapper
        contentColumns = mapper.columns.filter { !Self.metadataFields.contains($0.name) }
        updatedAtColumn = mapper.columns.first { $0.name == "updatedAt" }
    }

    /// A live row (texts aligned with `mapper.columns`).
    public func state(row values: [String?], fallbackAt: Int64) throws(MappingError) -> RecordState {
        var fields: [String: String?] = [:]
        var at = fallbackAt
        for (column, text) in zip(mapper.columns, values) {
            if column.name == "updatedAt" {
                if let text, case .date(let ms) = try RowMapper.value(of: column, text: text) { at = ms }
                continue
            }
            guard !Self.metadataFields.contains(column.name) else { continue }
            let value = try RowMapper.value(of: column, text: text)
            fields[column.name] = .some(try RowMapper.postgresText(of: column, value: value))
        }
        return .present(fields: fields, at: at)
    }

    /// A live document; fields it lacks are null (an `$unset` clears the column).
    public func state(document: Document, fallbackAt: Int64) throws(MappingError) -> RecordState {
        var fields: [String: String?] = [:]
        for column in contentColumns {
            fields[column.name] = .some(try RowMapper.postgresText(of: column, value: document[column.field] ?? .null))
        }
        return .present(fields: fields, at: Self.updatedAt(of: document) ?? fallbackAt)
    }

    /// `updatedAt` of a document as milliseconds: a BSON date, or an ISO-8601 string as the
    /// seed's apps write it. Anything else is nil (the caller falls back to the event time).
    public static func updatedAt(of document: Document) -> Int64? {
        switch document["updatedAt"] {
        case .date(let ms)?: ms
        case .string(let s)?: try? Timestamps.parseMilliseconds(s)
        default: nil
        }
    }

    /// The `$set` document for MongoDB: content fields plus metadata.
    public func mongoFields(key: String, fields: [String: String?], at: Int64, source: Side, version: Int64?) throws(MappingError) -> Document {
        var doc = Document()
        doc.fields.reserveCapacity(contentColumns.count + 4)
        doc.fields.append((RowMapper.keyField, .string(key)))
        for column in contentColumns {
            doc.fields.append((column.field, try RowMapper.value(of: column, text: fields[column.name] ?? nil)))
        }
        doc.fields.append(("updatedAt", .date(at)))
        doc.fields.append(("source", .string(source.rawValue)))
        if let version { doc.fields.append(("version", .int64(version))) }
        return doc
    }

    /// Reads `updatedAt` from canonical fields' timestamp text.
    public static func milliseconds(fromPostgres text: String) -> Int64? {
        try? Timestamps.parseMilliseconds(text)
    }

    /// A MongoDB `_id` as an `externalId` for documents inserted without one: ObjectIds as
    /// their hex, strings as is, anything else as JSON.
    public static func derivedKey(from id: Value) -> String {
        switch id {
        case .objectId(let oid): oid.description
        case .string(let s): s
        default: JSON.serialize(id)
        }
    }
}
