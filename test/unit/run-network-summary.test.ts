import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tallyNetworkLog, upstreamFailureAdvice } from '../../src/protocol/network-log-records.js';
import { runSummary } from '../../src/cli/session/run-summary.js';
import { guardPolicy } from '../../src/cli/session/mounts.js';
import { imageReason } from '../../src/cli/commands/run.js';
import { UsageError } from '../../src/cli/errors.js';
import type { LoadedPolicy } from '../../src/cli/config/types.js';

const line = (o: object) => JSON.stringify({ v: 1, ts: '2026-01-01T00:00:00.000Z', ...o });
const request = (decision: string, code: string, host: string, p: string, method = 'GET') =>
  line({ event: 'request', decision, code, method, host, path: p, url: `https://${host}${p}` });
const failure = (host: string, reason: string) =>
  line({ event: 'error', decision: 'error', method: 'GET', host, path: '/', reason });

describe('end-of-run network summary', () => {
  const log = [
    request('allowed', 'allowed', 'ok.test', '/'),
    request('blocked', 'host_not_allowed', 'evil.test', '/a?x=1'),
    request('blocked', 'host_not_allowed', 'evil.test', '/a'),
    request('blocked', 'path_not_allowed', 'evil.test', '/b', 'POST'),
    request('would_block', 'host_not_allowed', 'npm.test', '/lodash'),
    failure('registry.internal', 'bad certificate (SELF_SIGNED_CERT_IN_CHAIN)'),
    failure('registry.internal', 'bad certificate (SELF_SIGNED_CERT_IN_CHAIN)'),
    failure('down.test', 'connection refused'),
    failure('odd.test', 'response interrupted after 10 bytes: connection reset by upstream'),
  ].join('\n');
  it('groups blocked requests by host, with counts, methods, codes and the most frequent paths', () => {
    const t = tallyNetworkLog(log);
    assert.deepEqual([t.allowed, t.blocked, t.wouldBlock, t.errors], [1, 3, 1, 4]);
    assert.deepEqual(t.blockedByHost, [
      {
        host: 'evil.test',
        count: 3,
        methods: ['GET', 'POST'],
        codes: ['host_not_allowed', 'path_not_allowed'],
        paths: [
          { path: '/a', count: 2 },
          { path: '/b', count: 1 },
        ],
      },
    ]);
  });
  it('summarises upstream failures by host and kind, with the fix', () => {
    const t = tallyNetworkLog(log);
    assert.deepEqual(
      t.upstreamFailures.map((f) => [f.host, f.count, f.advice !== null]),
      [
        ['registry.internal', 2, true],
        ['down.test', 1, true],
        ['odd.test', 1, false],
      ],
    );
    const { warnings } = runSummary({ tally: t, audit: false, logPath: '/tmp/net.log' });
    assert.match(
      warnings.join('\n'),
      /4 upstream failures: the proxy could not complete these requests; see \/tmp\/net\.log/,
    );
    assert.match(
      warnings.join('\n'),
      /registry\.internal: 2× bad certificate \(SELF_SIGNED_CERT_IN_CHAIN\) — fix: .*upstream_ca_file in sandbox\.yaml/,
    );
    assert.match(warnings.join('\n'), /down\.test: 1× connection refused — fix: .*upstream_hosts/);
  });
  it('names the audit result and where the suggestion is; in audit mode blocks are safety refusals', () => {
    const s = runSummary({ tally: tallyNetworkLog(log), audit: true, suggestionPath: '/tmp/s.yaml' });
    assert.equal(s.notices[0], 'audit: 1 request would have been blocked; suggested allowlist: /tmp/s.yaml');
    assert.equal(s.notices[1], '  npm.test: 1 request (GET) /lodash; host_not_allowed');
    assert.match(s.warnings[0]!, /3 requests were refused even in audit mode \(safety refusals\)/);
  });
  it('sandbox-chosen text cannot put control characters on the terminal', () => {
    const t = tallyNetworkLog(request('blocked', 'host_not_allowed', 'x.test', '/\u001b[2J\u202e'));
    const { warnings } = runSummary({ tally: t, audit: false });
    assert.ok(!/[\u0000-\u001f\u202e]/.test(warnings.join('')), warnings.join('\n'));
  });
  it('advice covers the failures the proxy reports, and nothing it cannot fix', () => {
    assert.match(upstreamFailureAdvice('bad certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE)')!, /upstream_ca_file/);
    assert.match(upstreamFailureAdvice('cannot resolve x.test: ENOTFOUND')!, /upstream_dns/);
    assert.match(upstreamFailureAdvice('bad certificate (ERR_TLS_CERT_ALTNAME_INVALID)')!, /does not name this host/);
    assert.equal(upstreamFailureAdvice('credential pass failed: TypeError'), null);
  });
});

describe('policy guard', () => {
  it('.airlock/, .airut/ and policy paths inside the working directory, resolved, read-only, no nesting', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'airlock-guard-'));
    const outside = await mkdtemp(path.join(tmpdir(), 'airlock-guard-out-'));
    await mkdir(path.join(cwd, '.airlock/container'), { recursive: true });
    await mkdir(path.join(cwd, '.airut'));
    await mkdir(path.join(cwd, 'ci'));
    await writeFile(path.join(cwd, 'ci/allow.yaml'), 'domains: []\n');
    await writeFile(path.join(outside, 'allow.yaml'), 'domains: []\n');
    await symlink(path.join(cwd, 'ci'), path.join(cwd, 'policy-link'));
    const guard = await guardPolicy(cwd, [
      path.join(cwd, '.airlock'),
      path.join(cwd, '.airlock/container/Dockerfile'),
      path.join(cwd, 'policy-link/allow.yaml'),
      path.join(outside, 'allow.yaml'),
      null,
    ]);
    assert.deepEqual(
      guard.mounts.map((m) => [m.source.startsWith(cwd), m.target, m.readOnly]),
      [
        [true, '/workspace/.airlock', true],
        [true, '/workspace/.airut', true],
        [true, '/workspace/ci/allow.yaml', true],
      ],
    );
    assert.deepEqual(guard.warnings, []);
    await guard.release();
    assert.ok(
      existsSync(path.join(cwd, '.airlock')) && existsSync(path.join(cwd, '.airut')),
      'release removes nothing of the user',
    );
  });
  it('where no policy directory exists, an empty read-only one stands in, and its mount point is removed after', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'airlock-guard-'));
    const guard = await guardPolicy(cwd, []);
    assert.deepEqual(
      guard.mounts.map((m) => [m.target, m.readOnly]),
      [
        ['/workspace/.airlock', true],
        ['/workspace/.airut', true],
      ],
    );
    const empty = guard.mounts[0]!.source;
    assert.deepEqual(await readdir(empty), []);
    // What the engine does when it mounts onto a missing path inside the workspace bind mount.
    await mkdir(path.join(cwd, '.airlock'));
    await mkdir(path.join(cwd, '.airut'));
    await writeFile(path.join(cwd, '.airut/kept'), 'written on the host meanwhile');
    await guard.release();
    assert.ok(!existsSync(path.join(cwd, '.airlock')), 'the empty mount point is gone');
    assert.ok(existsSync(path.join(cwd, '.airut/kept')), 'a directory that is not empty is never removed');
    assert.ok(!existsSync(empty));
  });
  it('a symlinked .airlock/ cannot be guarded: a warning says so', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'airlock-guard-'));
    await mkdir(path.join(cwd, 'policy'));
    await symlink('policy', path.join(cwd, '.airlock'));
    const guard = await guardPolicy(cwd, []);
    assert.match(guard.warnings.join('\n'), /\.airlock is a symbolic link: the sandbox can replace it/);
    await guard.release();
  });
});

describe('the run says which image it uses and why', () => {
  const policy = (p: Partial<LoadedPolicy>): LoadedPolicy =>
    ({ configDir: '/r/.airlock', files: {}, build: null, ...p }) as LoadedPolicy;
  it('for every source', () => {
    assert.equal(imageReason('flag', policy({}), '/r'), 'given with --image');
    assert.equal(
      imageReason('config', policy({ files: { sandbox: '/r/.airlock/sandbox.yaml' } }), '/r'),
      'image: in .airlock/sandbox.yaml',
    );
    assert.equal(
      imageReason(
        'dockerfile',
        policy({ build: { dockerfile: '/r/.airlock/container/Containerfile', contextDir: '/r' } }),
        '/r',
      ),
      'built from .airlock/container/Containerfile',
    );
    assert.match(
      imageReason('embedded', policy({}), '/r'),
      /host-toolchain default \(no image: in sandbox\.yaml, no container\/ in \.airlock\)/,
    );
    assert.match(imageReason('embedded', policy({ configDir: null }), '/r'), /no \.airlock\/ or \.airut\/ here/);
  });
});

describe('audit on Kubernetes', () => {
  it('is refused with a message, not silently ignored; --writable-policy (which the Action passes) is accepted', async () => {
    const { runOnKubernetes } = await import('../../src/cli/commands/kube.js');
    const ctx = { cwd: tmpdir(), env: {}, stdout: process.stdout, stderr: process.stderr, isTTY: false };
    await assert.rejects(
      runOnKubernetes(['--engine', 'kubernetes', '--writable-policy', '--audit', '--', 'true'], ctx),
      (err: Error) =>
        err instanceof UsageError && /--audit is not available with --engine kubernetes/.test(err.message),
    );
  });
});
