import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildRunArgs, KEPT_CAPABILITIES, type ContainerSpec } from '../../src/cli/engine/run-args.js';
import { DISK_LIMITED_SCRATCH, sizeBytes } from '../../src/protocol/sandbox-config.js';

/**
 * The `<engine> run` argv carries every hardening flag, names but never values of variables, only the listed
 * mounts, and the command verbatim after the image.
 */

function spec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    engine: 'podman',
    name: 'airlock-run-abc',
    image: 'airlock-repo:1234',
    command: ['npm', 'test'],
    labels: { 'io.airlock.run': 'abc', 'io.airlock.owner-pid': '42' },
    envNames: ['FOO', 'TOKEN'],
    mounts: [{ source: '/src/repo', target: '/workspace', readOnly: false }],
    workdir: '/workspace',
    limits: { pidsLimit: 4096, nofile: 20000, nproc: 32768 },
    interactive: true,
    tty: false,
    networkArgs: [],
    seccompProfile: '/tmp/airlock-seccomp-x/seccomp.json',
    ...overrides,
  };
}

describe('container run argv', () => {
  it('drops all capabilities and adds back exactly the documented ones', () => {
    const args = buildRunArgs(spec());
    assert.ok(args.includes('--cap-drop=ALL'));
    const added = args.filter((a) => a.startsWith('--cap-add=')).map((a) => a.slice('--cap-add='.length));
    assert.deepEqual(added, [...KEPT_CAPABILITIES]);
    assert.ok(args.indexOf('--cap-drop=ALL') < args.indexOf(`--cap-add=${KEPT_CAPABILITIES[0]}`));
  });

  it('sets no-new-privileges, airlock’s seccomp profile, an init process, pull=never, pids and ulimits', () => {
    const args = buildRunArgs(spec());
    for (const flag of [
      '--security-opt=no-new-privileges',
      '--security-opt=seccomp=/tmp/airlock-seccomp-x/seccomp.json',
      '--init',
      '--pull=never',
      '--pids-limit=4096',
      '--ulimit=nofile=20000:20000',
      '--ulimit=nproc=32768:32768',
      '--workdir=/workspace',
    ]) {
      assert.ok(args.includes(flag), `missing ${flag}`);
    }
    assert.ok(!args.includes('--rm'), 'the container must outlive the client so OOM can be inspected');
  });

  it('never asks for host namespaces, privileges or the engine socket', () => {
    const args = buildRunArgs(spec()).join(' ');
    for (const forbidden of ['--privileged', 'host', '.sock', '--userns', '--ipc', '--pid=', '--uts']) {
      assert.ok(!args.includes(forbidden), `argv contains ${forbidden}`);
    }
  });

  it('passes exactly one seccomp option, before the image, and never unconfined', () => {
    const args = buildRunArgs(spec({ command: ['sh', '-c', 'echo --security-opt=seccomp=unconfined'] }));
    const image = args.indexOf('airlock-repo:1234');
    const seccomp = args.slice(0, image).filter((a) => a.includes('seccomp'));
    assert.deepEqual(seccomp, ['--security-opt=seccomp=/tmp/airlock-seccomp-x/seccomp.json']);
  });

  it('limits memory without extra swap and sets cpus only when configured', () => {
    const none = buildRunArgs(spec());
    assert.ok(!none.some((a) => a.startsWith('--memory') || a.startsWith('--cpus')));
    const limited = buildRunArgs(spec({ limits: { pidsLimit: 10, nofile: 1, nproc: 1, memory: '512m', cpus: 1.5 } }));
    assert.ok(limited.includes('--memory=512m'));
    assert.ok(limited.includes('--memory-swap=512m'));
    assert.ok(limited.includes('--cpus=1.5'));
    assert.ok(limited.includes('--pids-limit=10'));
  });

  it('passes environment variables by name only, whatever their values', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,10}$/), fc.string({ minLength: 8 }), { minKeys: 1 }),
        (env) => {
          const args = buildRunArgs(spec({ envNames: Object.keys(env) }));
          for (const [name, value] of Object.entries(env)) {
            const at = args.indexOf(name);
            assert.ok(at > 0 && args[at - 1] === '--env', `${name} is not passed as --env NAME`);
            assert.ok(!args.some((a) => a.includes(value) && !Object.keys(env).includes(a)), 'a value leaked');
          }
          assert.ok(!args.some((a) => a.includes('=') && args[args.indexOf(a) - 1] === '--env'));
        },
      ),
    );
  });

  it('puts network arguments before the image and the command verbatim after it', () => {
    const command = ['sh', '-c', 'echo "$HOME" --rm --privileged', '--', '-it'];
    const args = buildRunArgs(spec({ command, networkArgs: ['--network=airlock-net-x', '--dns=10.0.0.2'] }));
    const image = args.indexOf('airlock-repo:1234');
    assert.deepEqual(args.slice(image + 1), command);
    assert.ok(args.indexOf('--network=airlock-net-x') < image);
  });

  it('adds -t only with a TTY and mounts read-only when asked', () => {
    assert.ok(!buildRunArgs(spec()).includes('--tty'));
    assert.ok(buildRunArgs(spec({ tty: true })).includes('--tty'));
    const args = buildRunArgs(spec({ mounts: [{ source: '/data', target: '/data', readOnly: true }] }));
    assert.ok(args.includes('/data:/data:ro'));
    assert.equal(args.filter((a) => a === '--volume').length, 1);
  });

  it('refuses a mount path that -v would split differently', () => {
    assert.throws(() => buildRunArgs(spec({ mounts: [{ source: '/a:b', target: '/x', readOnly: false }] })), /':'/);
  });

  it('without a disk limit leaves the image writable and adds no tmpfs', () => {
    const args = buildRunArgs(spec());
    assert.ok(!args.includes('--read-only'));
    assert.ok(!args.includes('--tmpfs'));
  });

  for (const engine of ['podman', 'docker'] as const) {
    it(`with a disk limit makes the image read-only and every scratch directory a sized, exec tmpfs (${engine})`, () => {
      const args = buildRunArgs(spec({ engine, limits: { pidsLimit: 1, nofile: 1, nproc: 1, disk: '64m' } }));
      assert.ok(args.includes('--read-only'));
      // Podman's own read-only tmpfs mounts would be unsized; Docker has no such flag and would refuse it.
      assert.equal(args.includes('--read-only-tmpfs=false'), engine === 'podman');
      const tmpfs = args.flatMap((a, i) => (args[i - 1] === '--tmpfs' ? [a] : []));
      assert.deepEqual(
        tmpfs.map((t) => t.split(':')[0]),
        [...DISK_LIMITED_SCRATCH],
      );
      for (const t of tmpfs) {
        const options = t.slice(t.indexOf(':') + 1).split(',');
        assert.ok(options.includes(`size=${64 * 1024 * 1024}`), t);
        for (const o of ['rw', 'exec', 'nosuid', 'nodev']) assert.ok(options.includes(o), `${t} lacks ${o}`);
        assert.ok(!options.includes('noexec'), t);
      }
      assert.ok(tmpfs.some((t) => t.startsWith('/tmp:') && t.endsWith('mode=1777')));
      assert.ok(tmpfs.some((t) => t.startsWith('/root:') && t.endsWith('mode=700')));
      assert.ok(args.indexOf('--read-only') < args.indexOf(spec().image));
    });
  }

  it('leaves a scratch directory that is itself a mount target to that mount', () => {
    const mounts = [
      { source: '/src/repo', target: '/workspace', readOnly: false },
      { source: '/cache', target: '/root', readOnly: false },
    ];
    const args = buildRunArgs(spec({ mounts, limits: { pidsLimit: 1, nofile: 1, nproc: 1, disk: '1g' } }));
    const tmpfs = args.flatMap((a, i) => (args[i - 1] === '--tmpfs' ? [a.split(':')[0]] : []));
    assert.deepEqual(tmpfs, ['/tmp', '/var/tmp', '/run', '/home']);
    assert.ok(args.includes('/cache:/root:rw'));
  });

  it('reads sizes in binary units, as the engines do', () => {
    assert.equal(sizeBytes('4096b'), 4096);
    assert.equal(sizeBytes('1k'), 1024);
    assert.equal(sizeBytes('64M'), 64 * 1024 ** 2);
    assert.equal(sizeBytes('2g'), 2 * 1024 ** 3);
    assert.throws(() => sizeBytes('2 g'), /not a size/);
    assert.throws(() => sizeBytes('1.5g'), /not a size/);
  });
});
