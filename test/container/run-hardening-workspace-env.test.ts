import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { notEnforcedWarning, unenforcedLimits } from '../helpers/world.js';
import {
  airlock,
  collect,
  ENGINE_SUITES,
  prepareEngine,
  runOn,
  sandboxYaml,
  startAirlock,
  waitFor,
  workspace,
} from './harness.js';

/** CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) SETGID(6) SETUID(7): the only capabilities a sandboxed command holds. */
const KEPT_MASK = (1n << 0n) | (1n << 1n) | (1n << 3n) | (1n << 6n) | (1n << 7n);

function statusField(status: string, field: string): string {
  const line = status.split('\n').find((l) => l.startsWith(`${field}:`));
  assert.ok(line, `no ${field} in /proc/self/status`);
  return line.slice(field.length + 1).trim();
}

/** Every process command line on the host, to prove no secret value reaches one. */
async function hostCommandLines(): Promise<string[]> {
  const lines: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      lines.push((await readFile(`/proc/${pid}/cmdline`)).toString().replace(/\0/g, ' '));
    } catch {
      // the process exited meanwhile
    }
  }
  return lines;
}

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`container hardening, workspace and environment on ${engine}`, { skip }, () => {
    before(() => prepareEngine(engine));

    it('holds only the documented capabilities, no new privileges, and a pids limit', async () => {
      const cwd = await workspace(sandboxYaml('resource_limits:\n  pids_limit: 77\n'));
      const script =
        'cat /proc/self/status; echo ---; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max 2>/dev/null || echo absent';
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', script], { cwd });
      assert.equal(r.code, 0, r.stderr);
      const [status, pids] = r.stdout.toString().split('---\n') as [string, string];
      for (const set of ['CapEff', 'CapPrm', 'CapBnd']) {
        assert.equal(BigInt(`0x${statusField(status, set)}`), KEPT_MASK, set);
      }
      assert.equal(BigInt(`0x${statusField(status, 'CapInh')}`), 0n);
      assert.equal(BigInt(`0x${statusField(status, 'CapAmb')}`), 0n);
      assert.equal(statusField(status, 'NoNewPrivs'), '1');
      if ((await unenforcedLimits(engine)).has('pids_limit')) {
        assert.notEqual(pids.trim(), '77');
        assert.match(r.stderr, notEnforcedWarning('pids_limit', 77));
      } else {
        assert.equal(pids.trim(), '77');
      }
    });

    it('with resource_limits.disk, caps every write outside the workspace and leaves no disk-backed writable mount', async () => {
      const MiB = 1024 * 1024;
      const scratch = ['/tmp', '/var/tmp', '/run', '/root', '/home'];
      // Each fill writes 24 MiB against an 8 MiB limit; the rest of the image is read-only; /tmp still runs programs.
      const script = [
        `for d in ${scratch.join(' ')}; do dd if=/dev/zero of=$d/fill bs=1M count=24 2>/dev/null; echo "fill $d $(stat -c %s $d/fill) $(stat -f -c %T $d)"; rm -f $d/fill; done`,
        'for d in / /usr /etc /var /var/lib /opt; do if (echo x > $d/.airlock-probe) 2>/dev/null; then echo "writable $d"; fi; done',
        'for f in /etc/hosts /etc/resolv.conf /etc/hostname; do if (echo x >> $f) 2>/dev/null; then echo "writable $f"; fi; done',
        'cp /bin/true /tmp/t && /tmp/t && echo exec-ok',
        'echo kept > /workspace/out && echo workspace-ok',
        // Every writable mount, with its filesystem type: only memory-backed ones and the workspace may remain.
        'awk \'$6 ~ /^rw/ { for (i = 7; $i != "-"; i++); print "rwmount", $5, $(i + 1) }\' /proc/self/mountinfo',
      ].join('\n');
      const cwd = await workspace(sandboxYaml('resource_limits:\n  disk: 8m\n'));
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', script], { cwd });
      assert.equal(r.code, 0, r.stderr);
      const out = r.stdout.toString();
      for (const d of scratch) {
        const m = new RegExp(`^fill ${d} (\\d+) (\\S+)$`, 'm').exec(out);
        assert.ok(m, `no fill line for ${d}:\n${out}`);
        assert.equal(m[2], 'tmpfs', `${d} is not a tmpfs`);
        assert.ok(Number(m[1]) <= 8 * MiB && Number(m[1]) >= 7 * MiB, `${d} took ${m[1]} bytes`);
      }
      assert.doesNotMatch(out, /^writable /m);
      assert.match(out, /^exec-ok$/m);
      assert.match(out, /^workspace-ok$/m);
      assert.equal(await readFile(join(cwd, 'out'), 'utf8'), 'kept\n');
      // devtmpfs: rootless Podman cannot mknod, so it binds the host's device nodes (/dev/null, /dev/zero, …, and
      // /dev/null over masked /proc files) — single device files in the kernel's in-memory /dev, nothing to fill.
      const memoryBacked = new Set([
        'tmpfs',
        'proc',
        'devpts',
        'mqueue',
        'shm',
        'cgroup',
        'cgroup2',
        'sysfs',
        'devtmpfs',
      ]);
      const diskBacked = [...out.matchAll(/^rwmount (\S+) (\S+)$/gm)].filter((m) => !memoryBacked.has(m[2]!));
      assert.deepEqual(
        diskBacked.map((m) => m[1]),
        ['/workspace'],
        `writable disk-backed mounts:\n${out}`,
      );

      // Without the limit the same fill lands on the host's disk in full: the cap above is the setting's doing.
      const open = await workspace(sandboxYaml());
      const u = await airlock([...runOn(engine), '--', 'sh', '-c', script], { cwd: open });
      assert.equal(u.code, 0, u.stderr);
      assert.match(u.stdout.toString(), new RegExp(`^fill /var/tmp ${24 * MiB} `, 'm'));
      assert.match(u.stdout.toString(), /^writable \/usr$/m);
    });

    it('refuses what dropped capabilities guard: chroot, raw network config, mounts; and has no engine socket', async () => {
      const cwd = await workspace(sandboxYaml());
      const attacks = [
        'chroot / true',
        'ip link add airlockx type dummy',
        'mount -t tmpfs none /mnt',
        'test -e /run/podman/podman.sock',
        'test -e /var/run/docker.sock',
        'test -e /run/docker.sock',
      ];
      const script = attacks.map((a) => `if ${a} 2>/dev/null; then echo "ALLOWED: ${a}"; fi`).join('; ');
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', `${script}; echo checked`], { cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), 'checked\n');
    });

    it('mounts the working directory read-write at /workspace and starts there', async () => {
      const cwd = await workspace(sandboxYaml(), { 'input.txt': 'from host\n' });
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', 'pwd; cat input.txt; echo out > made.txt'], { cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), '/workspace\nfrom host\n');
      assert.equal(await readFile(join(cwd, 'made.txt'), 'utf8'), 'out\n');
    });

    it('adds --mount read-only, and a --mount on /workspace replaces the default', async () => {
      const cwd = await workspace(sandboxYaml(), { 'input.txt': 'cwd\n' });
      const data = await mkdtemp(join(tmpdir(), 'airlock-ct-data-'));
      await writeFile(join(data, 'd.txt'), 'data\n');
      const ro = await airlock(
        [
          ...runOn(engine),
          '--mount',
          `${data}:/data:ro`,
          '--',
          'sh',
          '-c',
          'cat /data/d.txt; touch /data/x || echo denied',
        ],
        { cwd },
      );
      assert.equal(ro.code, 0, ro.stderr);
      assert.equal(ro.stdout.toString(), 'data\ndenied\n');

      const replaced = await airlock(
        [...runOn(engine), `--mount=${data}:/workspace:ro`, '--', 'sh', '-c', 'ls; touch y 2>/dev/null || echo denied'],
        { cwd },
      );
      assert.equal(replaced.code, 0, replaced.stderr);
      assert.equal(replaced.stdout.toString(), 'd.txt\ndenied\n');
    });

    it('sets env and pass_env, and nothing else from the host environment', async () => {
      const cwd = await workspace(
        sandboxYaml('env:\n  FROM_CONFIG: configured\npass_env:\n  - PASSED\n  - NOT_SET_ON_HOST\n'),
      );
      const r = await airlock([...runOn(engine), '--', 'env'], {
        cwd,
        env: { PASSED: 'passed value', HOST_ONLY: 'must not leak' },
      });
      assert.equal(r.code, 0, r.stderr);
      const env = r.stdout.toString();
      assert.match(env, /^FROM_CONFIG=configured$/m);
      assert.match(env, /^PASSED=passed value$/m);
      assert.doesNotMatch(env, /HOST_ONLY|NOT_SET_ON_HOST|must not leak/);
    });

    it('never puts a secret value on an engine command line', async () => {
      const secret = `s3cr3t-${process.pid}-${Date.now()}`;
      const cwd = await workspace(sandboxYaml('env:\n  TOKEN: !env HOST_SECRET\n'));
      const child = startAirlock([...runOn(engine), '--', 'sh', '-c', 'echo "len=${#TOKEN}"; sleep 2'], {
        cwd,
        env: { HOST_SECRET: secret },
      });
      const result = collect(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor('the command to start', () => out.includes('len='));
      const leaked = (await hostCommandLines()).filter((l) => l.includes(secret));
      const r = await result;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString().trim(), `len=${secret.length}`);
      assert.deepEqual(leaked, []);
    });
  });
}
