import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { airlock, ENGINE_SUITES, prepareEngine, runOn, TEST_IMAGE, workspace } from './harness.js';

/**
 * Without --network-log, a run's network log is kept only when requests were blocked (it explains them), in
 * airlock's own directory, and only the newest 20: a busy CI machine's /tmp does not fill with them.
 */

const uid = process.getuid?.() ?? 0;

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`unrequested network logs on ${engine}`, { skip, timeout: 300_000 }, () => {
    before(() => prepareEngine(engine));

    it('are kept in one directory when a request was blocked, bounded to the newest 20; otherwise removed', async () => {
      const temp = await mkdtemp(join(tmpdir(), 'airlock-ct-tmpdir-'));
      const dir = join(temp, `airlock-${uid}`, 'network-logs');
      mkdirSync(dir, { recursive: true });
      // Logs of 25 earlier runs, older than anything written today.
      for (let i = 0; i < 25; i++)
        writeFileSync(join(dir, `2001-01-01T00-00-${String(i).padStart(2, '0')}-000Z-old${i}.log`), 'x\n');
      const cwd = await workspace(`image: ${TEST_IMAGE}\n`);
      const env = { TMPDIR: temp };

      const blocked = await airlock(
        [...runOn(engine), '--', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'https://blocked.example/'],
        { cwd, env },
      );
      assert.equal(blocked.code, 0, blocked.stderr);
      assert.equal(blocked.stdout.toString(), '403');
      const logPath = /1 request was blocked by the network allowlist \(0 allowed\); see (\S+)$/m.exec(
        blocked.stderr,
      )?.[1];
      assert.ok(logPath, blocked.stderr);
      assert.equal(join(logPath, '..'), dir);
      assert.match(readFileSync(logPath, 'utf8'), /BLOCKED GET https:\/\/blocked\.example\//);
      const kept = readdirSync(dir);
      assert.equal(kept.length, 20);
      assert.ok(kept.includes(logPath.slice(dir.length + 1)), 'the newest log was pruned');
      assert.ok(!kept.includes('2001-01-01T00-00-00-000Z-old0.log'), 'the oldest survived');

      const clean = await airlock([...runOn(engine), '--', 'true'], { cwd, env });
      assert.equal(clean.code, 0, clean.stderr);
      assert.deepEqual(readdirSync(dir).sort(), kept.sort(), 'a run with nothing blocked left a log');
      assert.ok(existsSync(logPath));
    });
  });
}
