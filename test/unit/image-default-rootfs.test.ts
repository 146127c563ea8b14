import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultImageTag, describeHostToolchain } from '../../src/cli/images/host-toolchain.js';
import { writeTar } from '../../src/cli/host/tar.js';

/** Read back a ustar archive: names, types, modes, link targets, contents — and every header checksum. */
function readTar(buf: Buffer): Map<string, { type: string; mode: number; content: Buffer; target: string }> {
  const out = new Map<string, { type: string; mode: number; content: Buffer; target: string }>();
  let at = 0;
  for (;;) {
    const header = buf.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const str = (o: number, l: number) =>
      header
        .subarray(o, o + l)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    const stored = parseInt(str(148, 8).trim(), 8);
    const copy = Buffer.from(header);
    copy.fill(0x20, 148, 156);
    assert.equal(
      copy.reduce((s, b) => s + b, 0),
      stored,
      'header checksum',
    );
    const size = parseInt(str(124, 12), 8);
    const prefix = str(345, 155);
    const name = (prefix ? `${prefix}/` : '') + str(0, 100);
    out.set(name.replace(/\/$/, ''), {
      type: str(156, 1),
      mode: parseInt(str(100, 8), 8),
      content: buf.subarray(at + 512, at + 512 + size),
      target: str(157, 100),
    });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

let host: string;

describe('embedded default image rootfs', () => {
  before(async () => {
    host = await mkdtemp(join(tmpdir(), 'airlock-host-'));
    await mkdir(join(host, 'usr/bin'), { recursive: true });
    await mkdir(join(host, 'etc/ssl/certs'), { recursive: true });
    await mkdir(join(host, 'etc/alternatives'), { recursive: true });
    await mkdir(join(host, 'usr/sbin'), { recursive: true });
    await writeFile(join(host, 'usr/sbin/ldconfig'), '');
    await symlink('usr/sbin', join(host, 'sbin'));
    await mkdir(join(host, 'lib64'));
    await symlink('usr/bin', join(host, 'bin'));
    await symlink('usr/lib', join(host, 'lib'));
    await symlink('/usr/bin/mawk', join(host, 'etc/alternatives/awk'));
    await writeFile(join(host, 'etc/ssl/certs/ca-certificates.crt'), 'PEM BUNDLE');
    await writeFile(
      join(host, 'etc/passwd'),
      'root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n',
    );
    await writeFile(join(host, 'etc/shadow'), 'root:SECRETHASH:::::::\n');
  });
  after(async () => rm(host, { recursive: true, force: true }));

  it('has a fresh /etc: its own passwd, the host CA bundle and alternatives, nothing else of the host', async () => {
    const { rootfs } = await describeHostToolchain(host);
    const entries = readTar(rootfs);
    const passwd = entries.get('etc/passwd')!.content.toString();
    assert.match(passwd, /^root:x:0:0:/);
    assert.match(passwd, /nobody:x:65534/);
    assert.ok(!passwd.includes('alice'), 'the host passwd leaked');
    assert.ok(!entries.has('etc/shadow'));
    assert.ok(!rootfs.includes('SECRETHASH'));
    assert.equal(entries.get('etc/ssl/certs/ca-certificates.crt')!.content.toString(), 'PEM BUNDLE');
    assert.equal(entries.get('etc/alternatives/awk')!.target, '/usr/bin/mawk');
    assert.equal(entries.get('tmp')!.mode, 0o1777);
    assert.equal(entries.get('workspace')!.type, '5');
  });

  it('mirrors merged-usr links and mounts /usr and unmerged directories read-only', async () => {
    const { rootfs, mounts } = await describeHostToolchain(host);
    const entries = readTar(rootfs);
    assert.equal(entries.get('bin')!.type, '2');
    assert.equal(entries.get('bin')!.target, 'usr/bin');
    assert.equal(entries.get('lib64')!.type, '5');
    assert.deepEqual(
      mounts.map((m) => [m.target, m.readOnly]),
      [
        ['/usr', true],
        ['/lib64', true],
      ],
    );
  });

  it('makes /sbin a real directory of links, so an engine can mount its init at /sbin/docker-init', async () => {
    const entries = readTar((await describeHostToolchain(host)).rootfs);
    assert.equal(entries.get('sbin')!.type, '5');
    assert.equal(entries.get('sbin/ldconfig')!.type, '2');
    assert.equal(entries.get('sbin/ldconfig')!.target, '/usr/sbin/ldconfig');
  });

  it('is byte-for-byte deterministic, so the tag is a content hash', async () => {
    const a = await describeHostToolchain(host);
    const b = await describeHostToolchain(host);
    assert.ok(a.rootfs.equals(b.rootfs));
    assert.match(defaultImageTag(a.rootfs), /^airlock-default:[0-9a-f]{64}$/);
    await writeFile(join(host, 'etc/ssl/certs/ca-certificates.crt'), 'ANOTHER BUNDLE');
    assert.notEqual(defaultImageTag((await describeHostToolchain(host)).rootfs), defaultImageTag(a.rootfs));
  });

  it('writes long paths with the ustar prefix field', () => {
    const path = `${'d'.repeat(90)}/${'e'.repeat(90)}/file`;
    const entries = readTar(writeTar([{ type: 'file', path, mode: 0o600, content: Buffer.from('x') }]));
    assert.equal(entries.get(path)!.content.toString(), 'x');
    assert.equal(entries.get(path)!.mode, 0o600);
  });
});
