import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseExecFailure } from '../../src/cli/session/exec-failure.js';

describe('a command the container init could not execute', { timeout: 10_000 }, () => {
  it("reads Podman's catatonit (exit 1): not found is 127, anything else 126", () => {
    assert.deepEqual(parseExecFailure(1, 'ERROR (catatonit:7): failed to exec pid1: No such file or directory\n'), {
      code: 127,
      reason: 'No such file or directory',
    });
    assert.deepEqual(parseExecFailure(1, 'ERROR (catatonit:6): failed to exec pid1: Permission denied\n'), {
      code: 126,
      reason: 'Permission denied',
    });
    assert.equal(parseExecFailure(1, 'ERROR (catatonit:6): failed to exec pid1: Not a directory')?.code, 127);
    assert.equal(parseExecFailure(1, 'ERROR (catatonit:6): failed to exec pid1: Exec format error')?.code, 126);
  });

  it("reads Docker's tini (exit 127 or 126), after engine warnings", () => {
    const stderr = 'WARNING: something\n[FATAL tini (7)] exec nonexistent-cmd failed: No such file or directory\n';
    assert.deepEqual(parseExecFailure(127, stderr), { code: 127, reason: 'No such file or directory' });
    assert.equal(parseExecFailure(126, '[FATAL tini (8)] exec /etc failed: Permission denied\n')?.code, 126);
  });

  it("never reinterprets a command's own exit code without the init's message, or with a mismatched code", () => {
    assert.equal(parseExecFailure(1, ''), null);
    assert.equal(parseExecFailure(127, 'sh: 1: nope: not found\n'), null);
    assert.equal(parseExecFailure(0, 'ERROR (catatonit:7): failed to exec pid1: No such file or directory\n'), null);
    assert.equal(parseExecFailure(127, 'ERROR (catatonit:7): failed to exec pid1: No such file or directory\n'), null);
    assert.equal(parseExecFailure(1, '[FATAL tini (7)] exec x failed: No such file or directory\n'), null);
    // Only at the start of a line near the beginning of stderr, not anywhere the command printed it.
    assert.equal(parseExecFailure(1, 'log: ERROR (catatonit:7): failed to exec pid1: No such file\n'), null);
    const later = `${'output\n'.repeat(20)}ERROR (catatonit:7): failed to exec pid1: No such file or directory\n`;
    assert.equal(parseExecFailure(1, later), null);
  });
});
