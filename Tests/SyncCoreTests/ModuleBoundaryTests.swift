import Foundation
import Testing

/// The layering the package relies on, read from the sources themselves: only `Postgres` and
/// `Mongo` touch libpq and libmongoc (so handles have one owner and errors one mapping),
/// `SyncCore` imports nothing (so its decisions cannot do I/O), and no library prints (they
/// take a `Logger`). The compiler enforces none of these: a stray import builds fine.
@Suite struct ModuleBoundaryTests {
    struct SourceFile {
        let module: String
        let path: String
        let lines: [Substring]
        var imports: [String] {
            lines.compactMap { line in
                let words = line.split(separator: " ")
                guard let i = words.firstIndex(of: "import"), i + 1 < words.count,
                      words[..<i].allSatisfy({ $0.hasPrefix("@") || $0 == "public" || $0 == "internal" }) else { return nil }
                return String(words[i + 1])
            }
        }
    }

    /// Every Swift file under `Sources/`, found from this file's path (`Tests/SyncCoreTests/…`).
    static func sources() throws -> [SourceFile] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let paths = try FileManager.default.subpathsOfDirectory(atPath: root.path)
        return try paths.filter { $0.hasSuffix(".swift") }.map { relative in
            let text = try String(contentsOf: root.appendingPathComponent(relative), encoding: .utf8)
            return SourceFile(module: String(relative.split(separator: "/")[0]), path: relative,
                              lines: text.split(separator: "\n", omittingEmptySubsequences: false))
        }
    }

    @Test func onlyPostgresAndMongoImportTheCLibraries() throws {
        let all = try Self.sources()
        #expect(all.count > 50, "found \(all.count) source files")
        let offenders = all.filter { f in
            f.module != "Postgres" && f.module != "Mongo" && f.imports.contains { $0 == "CLibPQ" || $0 == "CMongoC" }
        }
        #expect(offenders.map(\.path) == [])
        #expect(all.contains { $0.module == "Postgres" && $0.imports.contains("CLibPQ") })
        #expect(all.contains { $0.module == "Mongo" && $0.imports.contains("CMongoC") })
    }

    @Test func syncCoreImportsNothing() throws {
        let core = try Self.sources().filter { $0.module == "SyncCore" }
        #expect(core.count > 10)
        #expect(core.flatMap { f in f.imports.map { "\(f.path): import \($0)" } } == [])
    }

    @Test func librariesTakeALoggerAndDoNotPrint() throws {
        let libraries: Set<String> = ["SyncCore", "Postgres", "Mongo", "Bridge", "NocoDBMeta", "StatusServer"]
        let printing = try Regex("(^|[^A-Za-z0-9_.])print\\(")
        let offenders = try Self.sources().filter { libraries.contains($0.module) }.flatMap { f in
            f.lines.enumerated().compactMap { n, line -> String? in
                let code = line.trimmingCharacters(in: .whitespaces)
                guard !code.hasPrefix("//"), code.contains(printing) else { return nil }
                return "\(f.path):\(n + 1)"
            }
        }
        #expect(offenders == [])
    }
}
