import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashBuildInputs, repoImageTag } from '../../src/cli/images/context-hash.js';

/** The repo image tag changes exactly when something the build can see changes — including nested files. */

let root: string;
let n = 0;

async function tree(files: Record<string, string>): Promise<{ dockerfile: string; contextDir: string }> {
  const dir = join(root, String(n++));
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return { dockerfile: join(dir, 'Dockerfile'), contextDir: dir };
}

describe('repo image input hash', () => {
  before(async () => (root = await mkdtemp(join(tmpdir(), 'airlock-hash-'))));
  after(async () => rm(root, { recursive: true, force: true }));

  it('is stable for equal trees in different places', async () => {
    const a = await tree({ Dockerfile: 'FROM x\n', 'a.sh': 'echo', 'sub/b.txt': 'b' });
    const b = await tree({ Dockerfile: 'FROM x\n', 'sub/b.txt': 'b', 'a.sh': 'echo' });
    assert.equal(await hashBuildInputs(a), await hashBuildInputs(b));
    assert.match(repoImageTag(await hashBuildInputs(a)), /^airlock-repo:[0-9a-f]{64}$/);
  });

  it('changes with the Dockerfile, a nested file, a rename or the executable bit', async () => {
    const base = await hashBuildInputs(await tree({ Dockerfile: 'FROM x\n', 'sub/b.txt': 'b' }));
    const variants: Array<Record<string, string>> = [
      { Dockerfile: 'FROM y\n', 'sub/b.txt': 'b' },
      { Dockerfile: 'FROM x\n', 'sub/b.txt': 'c' },
      { Dockerfile: 'FROM x\n', 'sub/c.txt': 'b' },
      { Dockerfile: 'FROM x\n', 'sub/b.txt': 'b', 'sub/deeper/new': '' },
    ];
    for (const v of variants) assert.notEqual(await hashBuildInputs(await tree(v)), base, JSON.stringify(v));
    const exec = await tree({ Dockerfile: 'FROM x\n', 'sub/b.txt': 'b' });
    await chmod(join(exec.contextDir, 'sub/b.txt'), 0o755);
    assert.notEqual(await hashBuildInputs(exec), base);
  });

  it('cannot be fooled by moving bytes between a name and its content', async () => {
    const a = await hashBuildInputs(await tree({ Dockerfile: 'F', ab: 'c' }));
    const b = await hashBuildInputs(await tree({ Dockerfile: 'F', a: 'bc' }));
    assert.notEqual(a, b);
  });

  it('records symlinks by target without following them out of the context', async () => {
    const a = await tree({ Dockerfile: 'F' });
    await symlink('/etc/hostname', join(a.contextDir, 'link'));
    const b = await tree({ Dockerfile: 'F' });
    await symlink('/etc/hosts', join(b.contextDir, 'link'));
    assert.notEqual(await hashBuildInputs(a), await hashBuildInputs(b));
  });

  it('hashes a missing context directory as empty', async () => {
    const a = await tree({ Dockerfile: 'F' });
    const h1 = await hashBuildInputs({ dockerfile: a.dockerfile, contextDir: join(root, 'nope') });
    const h2 = await hashBuildInputs({ dockerfile: a.dockerfile, contextDir: join(root, 'nope2') });
    assert.equal(h1, h2);
  });
});
