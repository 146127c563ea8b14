import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { withBuildLock } from '../../src/cli/host/build-lock.js';
import { decideImageAction, parseCreated } from '../../src/cli/images/image-cache.js';
import { parseBuildStep } from '../../src/cli/images/build.js';

describe('image creation times from both engines', () => {
  it('parses Podman’s Go time format', () => {
    assert.equal(parseCreated('2026-11-27 00:14:05.997098766 +0000 UTC\n')?.toISOString(), '2026-11-27T00:14:05.997Z');
    assert.equal(parseCreated('2026-11-27 02:14:05 +0200 CEST')?.toISOString(), '2026-11-27T00:14:05.000Z');
  });

  it('parses Docker’s RFC 3339 with nanoseconds, and naive times as UTC', () => {
    assert.equal(parseCreated('2026-11-27T00:14:05.123456789Z')?.toISOString(), '2026-11-27T00:14:05.123Z');
    assert.equal(parseCreated('2026-11-27T01:14:05-01:00')?.toISOString(), '2026-11-27T02:14:05.000Z');
    assert.equal(parseCreated('2026-11-27T00:14:05')?.toISOString(), '2026-11-27T00:14:05.000Z');
  });

  it('treats anything else as absent (rebuild)', () => {
    for (const bad of ['', 'yesterday', '<no value>', '2026-13-45T99:99:99Z']) assert.equal(parseCreated(bad), null);
  });
});

describe('reuse, build or rebuild', () => {
  const now = new Date('2026-11-27T12:00:00Z');
  const hoursAgo = (h: number) => new Date(now.getTime() - h * 3_600_000);

  it('builds an absent image (with cache)', () => assert.equal(decideImageAction(null, now, 24), 'build'));
  it('reuses an image younger than the maximum age', () =>
    assert.equal(decideImageAction(hoursAgo(23), now, 24), 'reuse'));
  it('rebuilds a stale one without cache', () => assert.equal(decideImageAction(hoursAgo(25), now, 24), 'rebuild'));
  it('always rebuilds with max age 0', () => assert.equal(decideImageAction(hoursAgo(0), now, 0), 'rebuild'));
});

describe('build lock', () => {
  it('serialises concurrent holders of the same key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-lock-'));
    try {
      let inside = 0;
      let maxInside = 0;
      const body = async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        await new Promise((r) => setTimeout(r, 30));
        inside--;
      };
      await Promise.all(Array.from({ length: 5 }, () => withBuildLock('tag', body, { dir, pollMs: 5 })));
      assert.equal(maxInside, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes over a lock whose owner is dead, and releases it after a failing body', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-lock-'));
    try {
      const { createHash } = await import('node:crypto');
      const file = join(dir, `${createHash('sha256').update('k').digest('hex').slice(0, 32)}.lock`);
      // pid 2^22+1 is above any pid_max, so it is never a running process
      await writeFile(file, '4194305 1\n');
      let ran = false;
      await withBuildLock('k', () => Promise.resolve(void (ran = true)), { dir, pollMs: 5 });
      assert.equal(ran, true);
      await assert.rejects(
        withBuildLock('k', () => Promise.reject(new Error('boom')), { dir, pollMs: 5 }),
        /boom/,
      );
      let again = false;
      await withBuildLock('k', () => Promise.resolve(void (again = true)), { dir, pollMs: 5 });
      assert.equal(again, true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('build progress', () => {
  it('recognises the step markers of Podman, Docker and BuildKit', () => {
    assert.deepEqual(parseBuildStep('STEP 2/5: RUN apt-get update'), {
      step: 2,
      total: 5,
      instruction: 'RUN apt-get update',
    });
    assert.deepEqual(parseBuildStep('Step 3/7 : COPY . /app'), { step: 3, total: 7, instruction: 'COPY . /app' });
    assert.deepEqual(parseBuildStep('#6 [2/4] RUN npm ci'), { step: 2, total: 4, instruction: 'RUN npm ci' });
    assert.deepEqual(parseBuildStep('#6 [builder 3/4] RUN make'), { step: 3, total: 4, instruction: 'RUN make' });
    assert.deepEqual(parseBuildStep('STEP 1/1:'), { step: 1, total: 1 });
    assert.equal(parseBuildStep('Get:1 http://deb.debian.org bookworm InRelease'), null);
  });
});
