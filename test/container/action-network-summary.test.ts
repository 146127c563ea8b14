import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { ensureTestImage, TEST_IMAGE } from '../helpers/images.js';
import * as runner from './action-runner.js';

/**
 * The action with the network sandbox on (the default): requests the base branch's allowlist does not permit are
 * refused by the proxy, and the action turns the JSONL network log into the job summary's blocked-requests table,
 * one warning annotation per blocked host, and the log paths as outputs. With `audit: true` the same requests reach
 * a local service, the summary says so and shows the suggested allowlist, and the `suggested-allowlist` output names a
 * file that is the base branch's allowlist plus the suggested entries.
 */

let root: string;
let bundle: string;

void before(async () => {
  await ensureTestImage('podman');
  root = mkdtempSync(join(tmpdir(), 'airlock-action-net-'));
  bundle = runner.buildBundle(root);
});
void after(() => rmSync(root, { recursive: true, force: true }));

void describe('the action reports what the proxy blocked', { timeout: 600_000 }, () => {
  void it('blocked requests: summary table by host, with the entries that would allow them as YAML, a warning per host, log outputs', async () => {
    const origin = runner.originWith(
      root,
      'blocked',
      { '.airlock/sandbox.yaml': `image: ${TEST_IMAGE}\n`, '.airlock/network-allowlist.yaml': 'domains: []\n' },
      {
        'probe.sh':
          '#!/bin/sh\nfor u in http://blocked.test/secret/path http://blocked.test/secret/path http://other.test/; do\n  curl -s -o /dev/null -w "%{http_code}\\n" "$u"\ndone\n',
      },
    );
    const r = await runner.runAction(bundle, root, origin, { command: 'sh probe.sh' });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.deepEqual(r.sandboxOutput.trim().split('\n').slice(-3), ['403', '403', '403']);

    assert.match(r.summary, /0 allowed, 3 blocked/);
    assert.match(
      r.summary,
      /\| <code>blocked\.test<\/code> \| 2 \| <code>GET<\/code> \| <code>host_not_allowed<\/code> \| <code>\/secret\/path<\/code> ×2 \|/,
    );
    assert.match(r.summary, /```yaml\n[\s\S]*- host: blocked\.test\n {4}path: \/secret\/path\n {4}methods: \[GET\]\n/);
    const warnings = r.stdout.split('\n').filter((l) => l.startsWith('::warning title=airlock%3A blocked host::'));
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0]!, /blocked\.test/);
    assert.match(warnings[1]!, /other\.test/);

    const jsonl = r.outputs['network-log-json'];
    assert.ok(jsonl && existsSync(jsonl), 'network-log-json output missing');
    assert.match(readFileSync(jsonl, 'utf8'), /"decision":"blocked"/);
    assert.ok(r.outputs['network-log'] && existsSync(r.outputs['network-log']), 'network-log output missing');
  });

  void it('audit: true — the command’s exit code, would-be-blocked requests by host, the suggestion as YAML and as an output file', async () => {
    const pki = await makeTestPki(['audited.test']);
    const seen: string[] = [];
    const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const base = 'url_prefixes:\n  - {host: audited.test, path: /allowed, methods: [GET]}\n';
      const origin = runner.originWith(
        root,
        'audit',
        {
          '.airlock/sandbox.yaml': `image: ${TEST_IMAGE}\nupstream_ca_file: ca.pem\nupstream_hosts:\n  audited.test: host-gateway:${port}\n`,
          '.airlock/ca.pem': pki.caPem,
          '.airlock/network-allowlist.yaml': base,
        },
        {
          'probe.sh':
            '#!/bin/sh\nfor p in allowed items/1 items/2 items/3; do\n  curl -s -o /dev/null -w "%{http_code}\\n" "https://audited.test/$p"\ndone\nexit 5\n',
        },
      );
      const r = await runner.runAction(bundle, root, origin, { command: 'sh probe.sh', audit: 'true' });
      assert.equal(r.code, 5, `the command's exit code:\n${r.stdout}\n${r.stderr}`);
      assert.deepEqual(r.sandboxOutput.trim().split('\n').slice(-4), ['200', '200', '200', '200']);
      assert.deepEqual(seen, ['GET /allowed', 'GET /items/1', 'GET /items/2', 'GET /items/3']);
      assert.match(r.summary, /audit mode/);
      assert.match(r.summary, /\| <code>audited\.test<\/code> \| 3 \|/, 'would-be-blocked requests grouped by host');
      assert.match(r.summary, /```yaml\n[\s\S]*- host: audited\.test\n {4}path: \/items\/\*\n {4}methods: \[GET\]\n/);
      const file = r.outputs['suggested-allowlist'];
      assert.ok(file && existsSync(file), 'suggested-allowlist output missing');
      const text = readFileSync(file, 'utf8');
      assert.ok(text.startsWith(base.trimEnd()), text);
      assert.deepEqual(
        AllowlistSchema.parse(parse(text)).url_prefixes.map((e) => e.path),
        ['/allowed', '/items/*'],
      );
    } finally {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    }
  });
});
