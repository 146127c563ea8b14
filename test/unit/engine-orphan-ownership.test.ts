import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  isOrphan,
  LABEL,
  newRunIdentity,
  resourceLabelArgs,
  resourceLabels,
  type Liveness,
} from '../../src/cli/session/labels.js';
import { parseProcStartTime } from '../../src/cli/host/process-start-time.js';

/** Orphan cleanup removes only resources of dead airlock processes on this host; everything else is left alone. */

const here = (alive: Record<number, string>): Liveness => ({
  host: 'runner-1',
  startTimeOf: (pid) => alive[pid] ?? null,
});

const labels = (pid: string, start = '100', host = 'runner-1'): Record<string, string> => ({
  [LABEL.run]: 'abc123',
  [LABEL.ownerPid]: pid,
  [LABEL.ownerStart]: start,
  [LABEL.ownerHost]: host,
  [LABEL.created]: '2026-01-01T00:00:00.000Z',
});

describe('orphan ownership', () => {
  it('a resource whose owner process is gone is an orphan', () => {
    assert.equal(isOrphan(labels('4242'), here({})), true);
  });

  it('a resource of a live owner is not, so concurrent runs never clobber each other', () => {
    assert.equal(isOrphan(labels('4242', '100'), here({ 4242: '100' })), false);
  });

  it('a reused pid (same number, other start time) does not keep an orphan alive', () => {
    assert.equal(isOrphan(labels('4242', '100'), here({ 4242: '999' })), true);
  });

  it('resources from another host, or without complete airlock labels, are never touched', () => {
    assert.equal(isOrphan(labels('4242', '100', 'other-host'), here({})), false);
    assert.equal(isOrphan({}, here({})), false);
    assert.equal(isOrphan(null, here({})), false);
    assert.equal(isOrphan({ [LABEL.ownerPid]: '4242', [LABEL.ownerHost]: 'runner-1' }, here({})), false);
    assert.equal(isOrphan(labels('0'), here({})), false);
    assert.equal(isOrphan(labels('12abc'), here({})), false);
  });

  it('reads the start time after the command name, even one with spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    const stat = `1234 (evil) (name x) ${fields.join(' ')}`;
    assert.equal(parseProcStartTime(stat), '22');
  });

  it('labels every resource with run id, owner and creation time', () => {
    const identity = newRunIdentity(new Date('2026-05-01T00:00:00Z'));
    const all = resourceLabels(identity);
    assert.equal(all[LABEL.ownerPid], String(process.pid));
    assert.equal(all[LABEL.created], '2026-05-01T00:00:00.000Z');
    assert.match(all[LABEL.run]!, /^[0-9a-f]{12}$/);
    assert.notEqual(newRunIdentity().runId, identity.runId);
    const args = resourceLabelArgs(identity);
    assert.equal(args.filter((a) => a === '--label').length, Object.keys(all).length);
    assert.equal(isOrphan(all, { host: identity.ownerHost, startTimeOf: () => identity.ownerStart }), false);
  });
});
