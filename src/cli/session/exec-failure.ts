/**
 * A command the container cannot execute. `podman run`/`docker run` without an init answer 127 (not found) or 126
 * (not executable) before the container starts; with `--init` the init process execs the command instead and reports
 * the failure in its own words on the container's stderr: Podman's catatonit exits 1 (`ERROR (catatonit:7): failed
 * to exec pid1: No such file or directory`), Docker's tini exits 127 or 126 (`[FATAL tini (7)] exec X failed: …`).
 * Both are recognised only as the first thing on stderr together with their exit code, so a command's own exit 1 or
 * 127 is never reinterpreted unless it also printed exactly that line first — and then it chose its exit code anyway.
 */

export interface ExecFailure {
  /** 127: nothing to execute at that name; 126: something is there but cannot be executed. */
  code: 126 | 127;
  /** The operating system's reason, e.g. `No such file or directory`. */
  reason: string;
}

/** How much of the start of stderr is kept to look for the init's message. */
export const EXEC_FAILURE_PREFIX_BYTES = 4096;

const CATATONIT = /^ERROR \(catatonit:\d+\): failed to exec pid1: ([^\r\n]+)/;
const TINI = /^\[FATAL tini \(\d+\)\] exec .* failed: ([^\r\n]+)/;

/** The errno texts that mean "there is no such file to execute" (ENOENT, ENOTDIR), as shells and engines use 127. */
function codeFor(reason: string): 126 | 127 {
  return /no such file or directory|not a directory/i.test(reason) ? 127 : 126;
}

/**
 * Whether the container's init failed to exec the command, from the client's exit code and the first bytes of the
 * container's stderr (engine warnings may come first, so each of the first lines is tried).
 */
export function parseExecFailure(exitCode: number, stderrStart: string): ExecFailure | null {
  for (const line of stderrStart.split('\n').slice(0, 8)) {
    const catatonit = CATATONIT.exec(line);
    if (catatonit && exitCode === 1) return { code: codeFor(catatonit[1]!), reason: catatonit[1]!.trim() };
    const tini = TINI.exec(line);
    if (tini && (exitCode === 126 || exitCode === 127)) return { code: exitCode, reason: tini[1]!.trim() };
  }
  return null;
}

/** What airlock says about it: the command's name, and what to do. */
export function describeExecFailure(command: string, failure: ExecFailure): string {
  return failure.code === 127
    ? `'${command}' was not found in the container (${failure.reason}): install it in the image, or check the ` +
        `command's spelling and PATH (exit 127)`
    : `'${command}' cannot be executed in the container (${failure.reason}): is it a directory, or missing its ` +
        `execute bit or interpreter? (exit 126)`;
}
