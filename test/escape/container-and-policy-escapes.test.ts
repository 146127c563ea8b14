/**
 * Escape suite, container and policy half (issue 9): from inside `airlock run` on real Podman the untrusted command
 * attacks the container boundary (capabilities, mounts, namespaces, ptrace, engine sockets, /proc and /sys) and the
 * kernel surface a new user namespace would open (issue 13: raw syscalls in probes/kernel_vectors.py), looks
 * for the proxy's CA key and secrets, rewrites `.airlock/` in the workspace, and tries to exhaust processes and disk
 * (under `resource_limits.disk`, the setting that contains it).
 * The same recording listeners as the network half must see nothing, and the sandbox's own view of itself (env,
 * /proc, root file system) must hold no canary.
 *
 * Run after `npm run build`: node --import tsx --test --test-concurrency=1 test/escape/container-and-policy-escapes.test.ts
 */
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { notEnforcedWarning, unenforcedLimits } from '../helpers/world.js';
import {
  ESCAPE_ENGINES,
  canariesIn,
  containsSecret,
  dumpScript,
  listenerViolations,
  runInSandbox,
  startEscapeFixture,
  removeEscapeFixture,
  vectorTests,
  type EscapeFixture,
  type SandboxRun,
  type VectorTable,
} from './fixture.js';

/** This test process's namespace ids: the host's, for the sandbox to compare its own with. */
function hostNamespaces(): string {
  return ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'time', 'user', 'uts']
    .map((ns) => {
      try {
        return readlinkSync(`/proc/self/ns/${ns}`);
      } catch {
        return '';
      }
    })
    .filter(Boolean)
    .join(' ');
}

/** A small limit so the fork bomb meets it quickly and cheaply on a 2-core machine. */
const PIDS_LIMIT = 256;
/** Where to stop forking: far past the limit, and harmless on a host where the limit does not hold. */
const FORK_BOMB_BOUND = 4 * PIDS_LIMIT;
/** resource_limits.disk for this run: every scratch directory is a tmpfs this large; the image is read-only. */
const DISK_LIMIT_MIB = 64;

/**
 * What the sandbox promises depends on the world for two vectors: where the engine does not enforce pids_limit
 * (rootless Podman on cgroup v1), the container has no pids cgroup, the bomb runs to its bound, and airlock said
 * so on stderr before it started (checked below).
 */
const vectorsFor = (pidsEnforced: boolean): VectorTable => ({
  capabilities: {
    // CHOWN, DAC_OVERRIDE, FOWNER, SETGID, SETUID = 0xcb; nothing inheritable or ambient; no_new_privs set.
    expect:
      'CapInh=0000000000000000,CapPrm=00000000000000cb,CapEff=00000000000000cb,CapBnd=00000000000000cb,CapAmb=0000000000000000,NoNewPrivs=1',
    why: 'five capabilities (docs/container.md), no_new_privs',
  },
  mount_tmpfs: { expect: 'denied', why: 'no SYS_ADMIN: no mounts' },
  remount_usr_rw: { expect: 'denied', why: 'the host /usr stays read-only' },
  user_namespace: {
    expect: 'denied',
    why: 'unshare -Urm as an unprivileged user, then mount: no new user namespace (airlock’s seccomp profile)',
  },
  other_namespaces: { expect: 'denied', why: 'no new mount or network namespace' },
  chroot: { expect: 'denied', why: 'SYS_CHROOT dropped' },
  net_admin: { expect: 'denied,denied,denied,denied', why: 'NET_ADMIN dropped: no interfaces, addresses or routes' },
  mknod_block_device: { expect: 'denied,blockdevs=0', why: 'MKNOD dropped, no block devices' },
  hostname: { expect: 'denied', why: 'no SYS_ADMIN' },
  ptrace_host_process: { expect: 'denied,denied', why: 'own pid namespace: host processes do not exist here' },
  pid_namespace: {
    expect: /^foreign=0,init=\/(run\/podman-init|sbin\/docker-init|dev\/init)$/,
    why: 'only the container’s own processes',
  },
  host_namespaces: {
    // A rootful engine keeps the host's user namespace (root here is uid 0 there, held in check by the dropped
    // capabilities, seccomp and no_new_privs); time is not namespaced; cgroup v1 hosts share the cgroup namespace.
    expect: /^shared=((cgroup|time|user),?)*$/,
    why: 'own pid, network, mount, IPC and UTS namespaces',
  },
  engine_sockets: { expect: 'none', why: 'no engine socket is mounted' },
  sys_class_net: { expect: 'eth0,lo', why: 'one interface on the internal network' },
  proc_sys_write: { expect: 'denied,denied,denied', why: '/proc/sys is read-only' },
  sysfs_write: {
    // One release_agent per mounted v1 hierarchy a rootless container sees; none on v2.
    expect: new RegExp(
      `^release_agent=(absent|(denied)+),cgroup_mount=denied,pids_max=${pidsEnforced ? 'denied' : 'absent'},ksm=denied$`,
    ),
    why: 'cgroup hierarchies and /sys are read-only; no cgroup mount for a release_agent escape',
  },
  proc_leaks: { expect: 'kcore=denied,keys=0,kallsyms_addrs=0', why: 'masked /proc paths, no kernel addresses' },
  proxy_invisible: { expect: 'processes=0', why: 'the proxy runs in another container' },
  ca_key_absent: { expect: 'keys=0,ca_certs=1,ca_keys=0', why: 'the sandbox gets the CA certificate only' },
  ca_overlay_write: { expect: 'denied', why: 'the CA file is mounted read-only' },
  airlock_tamper: {
    expect: 'denied:403:host_not_allowed',
    why: 'the workspace policy is read-only in the sandbox, and was read before the command started',
  },
  disk_fill: {
    expect: `var_tmp=${DISK_LIMIT_MIB * 1024 * 1024},image=denied`,
    why: `resource_limits.disk (${DISK_LIMIT_MIB}m): scratch directories are sized tmpfs, the image is read-only`,
  },
  fork_bomb: pidsEnforced
    ? { expect: /^forked=\d+,stopped_by=EAGAIN$/, why: `stopped by --pids-limit (${PIDS_LIMIT})` }
    : {
        expect: `forked=${FORK_BOMB_BOUND},stopped_by=none`,
        why: `NOT stopped: pids_limit is not enforced here, the bomb ran to its bound (${FORK_BOMB_BOUND})`,
      },
  after_bomb: { expect: 'alive=yes', why: 'the sandbox (and the host) carry on after the bomb' },
});

const USER_NAMESPACE_REFUSED = 'unshare:EPERM';

/**
 * The kernel surface (issue 13, finding 5), probed with raw syscalls by probes/kernel_vectors.py: a new user namespace
 * — by unshare, clone or clone3, as root or as an unprivileged user who maps itself to root — and what one would open.
 */
const KERNEL_VECTORS: VectorTable = {
  userns_unshare: { expect: 'EPERM', why: 'unshare(CLONE_NEWUSER) refused by airlock’s seccomp profile' },
  userns_clone: { expect: 'EPERM', why: 'clone(CLONE_NEWUSER) refused by the profile' },
  userns_clone3: { expect: 'ENOSYS', why: 'clone3 answers ENOSYS: its flags are out of seccomp’s reach' },
  userns_as_user: { expect: USER_NAMESPACE_REFUSED, why: 'uid 1000 cannot make itself root of a user namespace' },
  userns_tmpfs: { expect: USER_NAMESPACE_REFUSED, why: 'no user + mount namespace, so no tmpfs mount' },
  userns_raw_socket: { expect: USER_NAMESPACE_REFUSED, why: 'no user + network namespace, so no raw socket' },
  userns_net_admin: {
    expect: USER_NAMESPACE_REFUSED,
    why: 'no user + network namespace, so no interface configuration',
  },
  userns_nfnetlink: {
    expect: USER_NAMESPACE_REFUSED,
    why: 'no user + network namespace, so no nftables table over netfilter netlink',
  },
  kernel_interfaces: {
    expect: [
      'setns',
      'keyctl',
      'add_key',
      'bpf',
      'perf_event_open',
      'userfaultfd',
      'io_uring_setup',
      'mount',
      'pivot_root',
      'open_by_handle_at',
      'fsopen',
      'init_module',
      'kexec_load',
    ]
      .map((name) => `${name}=EPERM`)
      .join(','),
    why: 'what the engines’ default profiles refuse, refused by airlock’s profile too (EPERM, before the kernel looks)',
  },
  personality_aslr_off: {
    // Podman applies the profile's default errno (ENOSYS); Docker 20.10 ignores defaultErrnoRet and answers EPERM.
    expect: /^(ENOSYS|EPERM)$/,
    why: 'personality(ADDR_NO_RANDOMIZE) refused: only the execution domains builds use are allowed',
  },
};

for (const engine of ESCAPE_ENGINES) {
  const pidsEnforced = !(await unenforcedLimits(engine)).has('pids_limit');
  const VECTORS = vectorsFor(pidsEnforced);
  describe(`escape vectors: container, proxy secrets and policy (${engine})`, () => {
    let fixture: EscapeFixture;
    let run: SandboxRun;
    let nextRun: SandboxRun;
    let tamperedAllowlist: string;
    const dumpDir = '.escape-dump-container';

    before(async () => {
      fixture = await startEscapeFixture(engine, [
        `  HOST_TEST_PID: "${process.pid}"`,
        `  HOST_NAMESPACES: "${hostNamespaces()}"`,
        'resource_limits:',
        `  pids_limit: ${PIDS_LIMIT}`,
        `  disk: ${DISK_LIMIT_MIB}m`,
      ]);
      const names = Object.keys(VECTORS);
      const bomb = names.indexOf('fork_bomb');
      const script = [
        `bash probes/container_vectors.sh ${names.slice(0, bomb).join(' ')}`,
        `python3 probes/kernel_vectors.py ${Object.keys(KERNEL_VECTORS).join(' ')}`,
        dumpScript(dumpDir),
        `FORK_BOMB_BOUND=${FORK_BOMB_BOUND} bash probes/container_vectors.sh ${names.slice(bomb).join(' ')}`,
      ].join('\n');
      run = await runInSandbox(fixture, script);
      tamperedAllowlist = await readFile(path.join(fixture.workspace, '.airlock/network-allowlist.yaml'), 'utf8');
      // On CI the next job starts from a fresh base checkout; here the test puts the trusted policy back itself.
      await writeFile(path.join(fixture.workspace, '.airlock/network-allowlist.yaml'), fixture.allowlistYaml);
      await writeFile(path.join(fixture.workspace, '.airlock/sandbox.yaml'), fixture.sandboxYaml);
      nextRun = await runInSandbox(
        fixture,
        'echo leftover=$(test -e /var/tmp/escape-fill && echo present || echo absent); echo pids_max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)',
      );
    });

    after(() => removeEscapeFixture(fixture));

    vectorTests({ ...VECTORS, ...KERNEL_VECTORS }, () => ({ fixture, run }));

    it('airlock_tamper: the policy the next run reads is untouched, and blocked.test was never contacted', () => {
      assert.equal(tamperedAllowlist, fixture.allowlistYaml);
      assert.ok(!fixture.recorders.blocked.connections.length, 'blocked.test was never contacted');
    });

    it(
      pidsEnforced
        ? 'fork_bomb: the number of processes stayed under the pids limit'
        : 'fork_bomb: the run said before it started that pids_limit is not enforced here',
      () => {
        if (!pidsEnforced) {
          assert.match(run.stderr, notEnforcedWarning('pids_limit', PIDS_LIMIT));
          return;
        }
        const forked = Number(/forked=(\d+)/.exec(run.results.get('fork_bomb') ?? '')?.[1] ?? NaN);
        assert.ok(forked > 0 && forked < PIDS_LIMIT, `forked ${forked}`);
        assert.doesNotMatch(run.stderr, /NOT enforced/);
      },
    );

    it('the next run starts from a fresh container: nothing the last one wrote outside the workspace is left', () => {
      assert.equal(nextRun.code, 0, nextRun.stderr);
      assert.equal(nextRun.results.get('leftover'), 'absent');
      assert.equal(nextRun.results.get('pids_max'), pidsEnforced ? String(PIDS_LIMIT) : '');
    });

    it('nothing reached blocked.test, attacker.test or the raw listeners', () => {
      assert.deepEqual(listenerViolations(fixture), []);
    });

    it('no canary anywhere in the sandbox: env, every process environ/cmdline, root file system, output', async () => {
      for (const secret of Object.values(fixture.canaries)) assert.ok(!containsSecret(run.stdout, secret));
      assert.deepEqual(await canariesIn(path.join(fixture.workspace, dumpDir), fixture.canaries), []);
    });
  });
}
