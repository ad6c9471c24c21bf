import Foundation

/// Starts a process with posix_spawn, its output appended to `log` (a file, never a pipe: a
/// server it starts may keep the descriptors open). Foundation's `Process` did not always see
/// such a child exit here, so these helpers reap with `waitpid` themselves.
func spawnProcess(_ arguments: [String], log: String) throws -> pid_t {
    let fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    defer { close(fd) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fd, 1)
    posix_spawn_file_actions_adddup2(&actions, fd, 2)
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
    guard rc == 0 else { throw SetupError("cannot start \(arguments[0]): \(String(cString: strerror(rc)))") }
    return pid
}

/// The exit status of a spawned process, once it has exited.
@discardableResult
func waitProcess(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return status
}
