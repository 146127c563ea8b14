import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imageCacheKey, parseImageHashes } from '../../src/action/image-cache.js';

const repo = 'a'.repeat(64);
const proxy = 'b'.repeat(64);

void describe('image cache keys from `airlock image hash`', () => {
  void it('reads exactly repo= and proxy= lines; keys carry all 64 hex digits and the version suffix', () => {
    assert.deepEqual(parseImageHashes(`repo=${repo}\nproxy=${proxy}\n`), { repo, proxy });
    assert.deepEqual(parseImageHashes(`repo=${repo}\n`), { repo });
    assert.equal(imageCacheKey('repo', repo, ''), `airlock-repo-${repo}`);
    assert.equal(imageCacheKey('proxy', proxy, '2'), `airlock-proxy-${proxy}-v2`);
  });

  void it('refuses any other output rather than caching under a wrong key', () => {
    for (const out of [
      '',
      `proxy=${proxy}\n`,
      `repo=${repo.slice(1)}\n`,
      `repo=${repo}\nlog line\n`,
      `repo=${repo}; rm -rf /\n`,
    ]) {
      assert.throws(() => parseImageHashes(out), Error, JSON.stringify(out));
    }
  });
});
