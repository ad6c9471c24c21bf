/// What `nocobridge --version`, `/status`, `/metrics` (`nocobridge_build_info`) and the
/// console's footer show. `commit` and `commitDate` come from git at build time
/// (Plugins/BuildInfoPlugin); `version` is bumped by hand when a release is tagged.
public enum BuildInfo {
    public static let version = "0.1.0"

    /// `0.1.0 (build 3dacbd5f0e1a, 2026-05-01T10:00:00+00:00)`.
    public static var description: String {
        "\(version) (build \(commit)" + (commitDate == "unknown" ? ")" : ", \(commitDate))")
    }
}
