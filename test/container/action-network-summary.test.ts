import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureTestImage, TEST_IMAGE } from '../helpers/images.js';
import * as runner from './action-runner.js';

/**
 * The action with the network sandbox on (the default): requests the base branch's allowlist does not permit are
 * refused by the proxy, and the action turns the JSONL network log into the job summary's blocked-requests table,
 * one warning annotation per blocked host, and the log paths as outputs.
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
});
