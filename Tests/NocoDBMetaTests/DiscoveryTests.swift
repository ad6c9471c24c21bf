import Foundation
import Testing
@testable import NocoDBMeta

@Suite struct DiscoveryTests {
    func decode<T: Decodable>(_ json: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(T.self, from: Data(json.utf8))
    }

    @Test func theDefaultSourceKeepsTablesInTheBaseSchema() throws {
        let base: MetaBase = try decode(#"{"id":"p1a2b3c4d5e6f7g","title":"R","prefix":"","sources":[{"id":"ds1","is_meta":1,"is_local":0}]}"#)
        let table: MetaTable = try decode(#"{"id":"m1","title":"Waiter Ops","table_name":"Waiter_Ops","source_id":"ds1"}"#)
        #expect(Discovery.schema(of: table, in: base, external: "public") == "p1a2b3c4d5e6f7g")
    }

    @Test func legacyBasesUseTheDefaultSchemaAndExternalSourcesTheConfiguredOne() throws {
        let legacy: MetaBase = try decode(#"{"id":"p1","title":"R","prefix":"nc_ab1c__","sources":[{"id":"ds1","is_meta":true}]}"#)
        let external: MetaBase = try decode(#"{"id":"p2","title":"R","sources":[{"id":"ds2","is_meta":false,"is_local":false}]}"#)
        let t1: MetaTable = try decode(#"{"id":"m1","title":"a","table_name":"nc_ab1c___a","source_id":"ds1"}"#)
        let t2: MetaTable = try decode(#"{"id":"m2","title":"b","table_name":"b","source_id":"ds2"}"#)
        #expect(Discovery.schema(of: t1, in: legacy, external: "x") == "public")
        #expect(Discovery.schema(of: t2, in: external, external: "restaurant") == "restaurant")
    }

    @Test func nocodbsLooseBooleansDecode() throws {
        let columns: [MetaColumn] = try decode(#"""
            [{"id":"c1","title":"Id","column_name":"id","uidt":"ID","system":1},
             {"id":"c2","title":"Table No","column_name":"Table_No","uidt":"Number","system":false},
             {"id":"c3","title":"Link","uidt":"Links","system":null}]
            """#)
        #expect(columns.map(\.system) == [true, false, false])
        #expect(columns[2].columnName == nil)
    }

    @Test func errorsNameWhatFailedAndNeverTheToken() {
        let errors: [NocoDBError] = [
            .unauthorized(server: "https://noco.example.com"), .notFound("base \"x\""),
            .rejected(operation: "create table a", status: 422, message: "bad"),
            .unavailable(operation: "list bases", attempts: 4, last: "HTTP 503"),
        ]
        for e in errors { #expect(!e.description.contains("zq9Xsecret") && !e.description.contains("user:secret")) }
        var config = NocoDBConfiguration(url: URL(string: "https://user:secret@noco.example.com:8443")!, token: "zq9Xsecret", base: "b")
        config.attempts = 2
        #expect(config.displayURL == "https://noco.example.com:8443")
    }
}
