import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { z } from 'zod';
import {
  ALLOWED_PERSONALITIES,
  CLONE_FLAGS,
  CLONE_NAMESPACE_MASK,
  DENIED,
  ERRNO,
  UNSHARE_NAMESPACE_MASK,
  sandboxSeccompProfile,
  seccompProfileJson,
  type EngineArchitecture,
  type SeccompProfile,
  type SeccompRule,
} from '../../src/cli/engine/seccomp-profile.js';
import { kernelSeccompProblem, writeSeccompProfile } from '../../src/cli/session/seccomp-file.js';

/**
 * airlock's seccomp profile, judged by evaluating it as the engines and libseccomp do: the engine keeps the rules
 * whose `includes`/`excludes` fit its architecture and kernel, and a syscall gets the action of the rule that names
 * it and whose argument comparisons all hold, else the default. The profile is built so that at most one action can
 * ever match; the evaluator throws if two different ones do.
 */

const ARCHES: EngineArchitecture[] = ['amd64', 'arm64', 's390x'];

type Verdict = { action: 'allow' } | { action: 'errno'; errno: number };

function kernelAtLeast(kernel: string, min: string): boolean {
  const [a = 0, b = 0] = kernel.split('.').map(Number);
  const [c = 0, d = 0] = min.split('.').map(Number);
  return a > c || (a === c && b >= d);
}

function applies(rule: SeccompRule, arch: EngineArchitecture, kernel: string): boolean {
  if (rule.includes?.arches && !rule.includes.arches.includes(arch)) return false;
  if (rule.excludes?.arches?.includes(arch)) return false;
  if (rule.includes?.minKernel && !kernelAtLeast(kernel, rule.includes.minKernel)) return false;
  return true;
}

function holds(rule: SeccompRule, args: bigint[]): boolean {
  return (rule.args ?? []).every(({ index, value, valueTwo, op }) => {
    const arg = args[index] ?? 0n;
    switch (op) {
      case 'SCMP_CMP_EQ':
        return arg === BigInt(value);
      case 'SCMP_CMP_NE':
        return arg !== BigInt(value);
      case 'SCMP_CMP_MASKED_EQ':
        return (arg & BigInt(value)) === BigInt(valueTwo);
    }
  });
}

function verdictOf(rule: { action: string; errnoRet?: number }, defaultErrno: number): Verdict {
  return rule.action === 'SCMP_ACT_ALLOW'
    ? { action: 'allow' }
    : { action: 'errno', errno: rule.errnoRet ?? defaultErrno };
}

function decide(
  profile: SeccompProfile,
  syscall: string,
  { arch = 'amd64', args = [], kernel = '6.1' }: { arch?: EngineArchitecture; args?: bigint[]; kernel?: string } = {},
): Verdict {
  const matches = profile.syscalls
    .filter((r) => r.names.includes(syscall) && applies(r, arch, kernel) && holds(r, args))
    .map((r) => verdictOf(r, ERRNO.EPERM));
  const distinct = new Set(matches.map((v) => JSON.stringify(v)));
  if (distinct.size > 1) throw new Error(`${syscall} on ${arch}: rules disagree (${[...distinct].join(' / ')})`);
  return matches[0] ?? { action: 'errno', errno: profile.defaultErrnoRet };
}

const ALLOW: Verdict = { action: 'allow' };
const EPERM: Verdict = { action: 'errno', errno: ERRNO.EPERM };
const ENOSYS: Verdict = { action: 'errno', errno: ERRNO.ENOSYS };

const uint64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const sixArgs = fc.array(uint64, { minLength: 6, maxLength: 6 });

/**
 * The seccomp object of the OCI runtime spec (config-linux.md, "Seccomp"), with `archMap`, `includes`, `excludes` and
 * `comment` as Docker and Podman read them in a profile file. Strict: an unknown or misspelt key is an error here,
 * while the engines would silently ignore it.
 */
const OciSeccompProfile = z.strictObject({
  defaultAction: z.enum([
    'SCMP_ACT_KILL',
    'SCMP_ACT_KILL_PROCESS',
    'SCMP_ACT_KILL_THREAD',
    'SCMP_ACT_TRAP',
    'SCMP_ACT_ERRNO',
    'SCMP_ACT_TRACE',
    'SCMP_ACT_ALLOW',
    'SCMP_ACT_LOG',
    'SCMP_ACT_NOTIFY',
  ]),
  defaultErrnoRet: z.number().int().min(0).max(4095),
  archMap: z
    .array(
      z.strictObject({
        architecture: z.string().regex(/^SCMP_ARCH_[A-Z0-9_]+$/),
        subArchitectures: z.array(z.string().regex(/^SCMP_ARCH_[A-Z0-9_]+$/)),
      }),
    )
    .min(1),
  syscalls: z
    .array(
      z.strictObject({
        names: z.array(z.string().regex(/^[a-z_][a-z0-9_]*$/)).min(1),
        action: z.enum(['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO']),
        errnoRet: z.number().int().min(1).max(4095).optional(),
        args: z
          .array(
            z.strictObject({
              index: z.number().int().min(0).max(5),
              value: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
              valueTwo: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
              op: z.enum([
                'SCMP_CMP_NE',
                'SCMP_CMP_LT',
                'SCMP_CMP_LE',
                'SCMP_CMP_EQ',
                'SCMP_CMP_GE',
                'SCMP_CMP_GT',
                'SCMP_CMP_MASKED_EQ',
              ]),
            }),
          )
          .min(1)
          .optional(),
        includes: z
          .strictObject({
            arches: z.array(z.string()).min(1).optional(),
            minKernel: z
              .string()
              .regex(/^\d+\.\d+$/)
              .optional(),
          })
          .optional(),
        excludes: z.strictObject({ arches: z.array(z.string()).min(1).optional() }).optional(),
        comment: z.string().min(1),
      }),
    )
    .min(1),
});

/** What the Docker and Podman defaults refuse a container without privileges, named here independently of the module. */
const MUST_DENY = [
  'keyctl',
  'add_key',
  'request_key',
  'bpf',
  'perf_event_open',
  'userfaultfd',
  'kexec_load',
  'kexec_file_load',
  'init_module',
  'finit_module',
  'delete_module',
  'mount',
  'umount',
  'umount2',
  'pivot_root',
  'chroot',
  'setns',
  'open_by_handle_at',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
  'reboot',
  'swapon',
  'swapoff',
  'syslog',
  'acct',
  'settimeofday',
  'clock_settime',
  'sethostname',
  'setdomainname',
  'iopl',
  'ioperm',
  'quotactl',
  'lookup_dcookie',
  'kcmp',
  'fsopen',
  'fsmount',
  'move_mount',
  'open_tree',
  'mount_setattr',
  'vmsplice',
  'mbind',
  'move_pages',
];

describe('the sandbox seccomp profile', { timeout: 60_000 }, () => {
  const profile = sandboxSeccompProfile();

  it('has the shape of an OCI seccomp profile as the engines read it, and survives JSON as is', () => {
    const parsed = JSON.parse(seccompProfileJson()) as unknown;
    assert.deepEqual(parsed, profile);
    OciSeccompProfile.parse(parsed);
    assert.throws(() => OciSeccompProfile.parse({ ...profile, defaultErrno: 'ENOSYS' }));
  });

  it('refuses what it does not list with ENOSYS, so libc falls back from syscalls newer than the list', () => {
    assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(profile.defaultErrnoRet, 38);
    assert.deepEqual(decide(profile, 'some_future_syscall'), ENOSYS);
  });

  it('covers x86_64 with its i386 and x32 ABIs, aarch64 with arm, and s390x', () => {
    assert.deepEqual(profile.archMap, [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
      { architecture: 'SCMP_ARCH_S390X', subArchitectures: ['SCMP_ARCH_S390'] },
    ]);
  });

  it('computes the namespace masks from the kernel flags', () => {
    assert.equal(CLONE_NAMESPACE_MASK, 0x7e020000);
    assert.equal(UNSHARE_NAMESPACE_MASK, 0x7e020080);
    for (const flag of Object.values(CLONE_FLAGS)) {
      assert.equal(flag & (flag - 1), 0, `0x${flag.toString(16)} is one bit`);
      assert.equal((UNSHARE_NAMESPACE_MASK & flag) >>> 0, flag);
    }
    // In clone(2) the low byte is the exit signal: CLONE_NEWTIME's bit must not be in clone's mask.
    assert.equal(CLONE_NAMESPACE_MASK & 0xff, 0);
  });

  for (const arch of ARCHES) {
    const flagsAt = arch === 's390x' ? 1 : 0;

    it(`clone on ${arch}: allowed without namespace flags, EPERM with any (flags are argument ${flagsAt})`, () => {
      fc.assert(
        fc.property(sixArgs, (args) => {
          const flags = args[flagsAt]!;
          const expected = (flags & BigInt(CLONE_NAMESPACE_MASK)) === 0n ? ALLOW : EPERM;
          assert.deepEqual(decide(profile, 'clone', { arch, args }), expected);
        }),
        { numRuns: 2000 },
      );
      const thread = 0x3d0f00n; // glibc pthread_create: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
      const fork = 0x1200011n; // glibc fork: CHILD_SETTID|CHILD_CLEARTID|SIGCHLD
      const at = (flags: bigint): bigint[] => (flagsAt === 0 ? [flags, 0n] : [0n, flags]);
      assert.deepEqual(decide(profile, 'clone', { arch, args: at(thread) }), ALLOW);
      assert.deepEqual(decide(profile, 'clone', { arch, args: at(fork) }), ALLOW);
      assert.deepEqual(decide(profile, 'clone', { arch, args: at(fork | BigInt(CLONE_FLAGS.CLONE_NEWUSER)) }), EPERM);
      // The flags in the other position never decide: a namespace flag there is no namespace request.
      const other =
        flagsAt === 0 ? [fork, BigInt(CLONE_FLAGS.CLONE_NEWUSER)] : [BigInt(CLONE_FLAGS.CLONE_NEWUSER), fork];
      assert.deepEqual(decide(profile, 'clone', { arch, args: other }), ALLOW);
    });

    it(`unshare on ${arch}: namespaces (time included) refused with EPERM, the rest allowed`, () => {
      fc.assert(
        fc.property(sixArgs, (args) => {
          const expected = (args[0]! & BigInt(UNSHARE_NAMESPACE_MASK)) === 0n ? ALLOW : EPERM;
          assert.deepEqual(decide(profile, 'unshare', { arch, args }), expected);
        }),
        { numRuns: 2000 },
      );
      for (const flag of Object.values(CLONE_FLAGS)) {
        assert.deepEqual(decide(profile, 'unshare', { arch, args: [BigInt(flag)] }), EPERM, `0x${flag.toString(16)}`);
      }
      const filesAndFs = 0x600n; // CLONE_FILES | CLONE_FS
      assert.deepEqual(decide(profile, 'unshare', { arch, args: [filesAndFs] }), ALLOW);
    });

    it(`clone3 on ${arch}: ENOSYS whatever its arguments, so glibc falls back to clone`, () => {
      fc.assert(fc.property(sixArgs, (args) => assert.deepEqual(decide(profile, 'clone3', { arch, args }), ENOSYS)));
    });

    it(`everything the engines' defaults refuse is refused on ${arch}, whatever the arguments`, () => {
      fc.assert(
        fc.property(fc.constantFrom(...MUST_DENY), sixArgs, (name, args) => {
          assert.deepEqual(decide(profile, name, { arch, args }), EPERM, name);
        }),
        { numRuns: 2000 },
      );
    });
  }

  it('lists every DENIED name in an EPERM rule and never allows it', () => {
    const denied = DENIED.flatMap((group) => group.names);
    for (const name of MUST_DENY) assert.ok(denied.includes(name), `${name} is not in DENIED`);
    for (const name of denied) {
      for (const arch of ARCHES) assert.deepEqual(decide(profile, name, { arch }), EPERM, `${name} on ${arch}`);
    }
    const allowedNames = profile.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names);
    assert.deepEqual(
      denied.filter((name) => allowedNames.includes(name)),
      [],
    );
  });

  it('allows what every program needs, unconditionally', () => {
    const essentials = [
      'read',
      'write',
      'openat',
      'close',
      'mmap',
      'mprotect',
      'brk',
      'execve',
      'exit_group',
      'wait4',
      'futex',
      'rt_sigaction',
      'rt_sigreturn',
      'set_robust_list',
      'rseq',
      'epoll_wait',
      'connect',
      'getrandom',
      'statx',
      'faccessat2',
      'vfork',
      'prctl',
    ];
    fc.assert(
      fc.property(fc.constantFrom(...essentials), fc.constantFrom(...ARCHES), sixArgs, (name, arch, args) =>
        assert.deepEqual(decide(profile, name, { arch, args }), ALLOW, name),
      ),
    );
    assert.ok(profile.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names).length > 250);
  });

  it('refuses the audit netlink socket with EINVAL and allows every other socket (capabilities guard raw ones)', () => {
    fc.assert(
      fc.property(sixArgs, (args) => {
        const audit = args[0] === 16n && args[2] === 9n;
        assert.deepEqual(decide(profile, 'socket', { args }), audit ? { action: 'errno', errno: 22 } : ALLOW);
      }),
    );
    assert.deepEqual(decide(profile, 'socket', { args: [16n, 3n, 9n] }), { action: 'errno', errno: 22 });
    assert.deepEqual(decide(profile, 'socket', { args: [16n, 3n, 12n] }), ALLOW); // netfilter: needs NET_ADMIN
    assert.deepEqual(decide(profile, 'socket', { args: [2n, 3n, 17n] }), ALLOW); // raw UDP: needs NET_RAW
  });

  it('allows only the execution domains builds use', () => {
    for (const persona of ALLOWED_PERSONALITIES) {
      assert.deepEqual(decide(profile, 'personality', { args: [BigInt(persona)] }), ALLOW);
    }
    assert.deepEqual(decide(profile, 'personality', { args: [0x40000n] }), ENOSYS); // ADDR_NO_RANDOMIZE
    assert.deepEqual(decide(profile, 'personality', { args: [0x0400000n] }), ENOSYS); // READ_IMPLIES_EXEC
  });

  it('allows ptrace of the sandbox’s own processes only on kernels where it cannot bypass seccomp (4.8+)', () => {
    assert.deepEqual(decide(profile, 'ptrace', { kernel: '4.8' }), ALLOW);
    assert.deepEqual(decide(profile, 'ptrace', { kernel: '6.18' }), ALLOW);
    assert.deepEqual(decide(profile, 'ptrace', { kernel: '4.4' }), ENOSYS);
  });

  it('keeps architecture-specific syscalls to their architecture', () => {
    assert.deepEqual(decide(profile, 'arch_prctl', { arch: 'amd64' }), ALLOW);
    assert.deepEqual(decide(profile, 'arch_prctl', { arch: 'arm64' }), ENOSYS);
    assert.deepEqual(decide(profile, 'set_tls', { arch: 'arm64' }), ALLOW);
    assert.deepEqual(decide(profile, 's390_runtime_instr', { arch: 'amd64' }), ENOSYS);
  });

  it('is written so every runtime reads it the same way', () => {
    for (const r of profile.syscalls) {
      // errnoRet only on ERRNO rules.
      assert.equal(r.errnoRet !== undefined, r.action === 'SCMP_ACT_ERRNO', r.comment);
      // crun turns two comparisons of one argument into two rules (OR): never rely on that.
      const indexes = (r.args ?? []).map((a) => a.index);
      assert.equal(new Set(indexes).size, indexes.length, r.comment);
      // No name twice in one rule.
      assert.equal(new Set(r.names).size, r.names.length, r.comment);
    }
    // runc and crun skip a rule whose action equals the default; only clone3's is, deliberately: the explicit rule
    // is what applies under engines that ignore defaultErrnoRet (Docker 20.10 answers EPERM by default).
    const sameAsDefault = profile.syscalls.filter(
      (r) => r.action === profile.defaultAction && r.errnoRet === profile.defaultErrnoRet,
    );
    assert.deepEqual(
      sameAsDefault.flatMap((r) => r.names),
      ['clone3'],
    );
  });

  it('is the profile committed in docs/seccomp-profile.json (regenerate with npm run schemas)', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    assert.equal(readFileSync(path.join(root, 'docs/seccomp-profile.json'), 'utf8'), seccompProfileJson());
  });
});

describe('the profile on disk and the kernel that must apply it', { timeout: 30_000 }, () => {
  it('writes the profile world-readable (it holds no secret) in a private directory, and removes both', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'airlock-seccomp-test-'));
    try {
      const file = await writeSeccompProfile(base);
      assert.equal(await readFile(file.path, 'utf8'), seccompProfileJson());
      assert.equal((await stat(file.path)).mode & 0o777, 0o644);
      assert.equal((await stat(path.dirname(file.path))).mode & 0o777, 0o700);
      await file.remove();
      assert.deepEqual(await readdir(base), []);
      await file.remove(); // twice is harmless: every cleanup path may call it
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it('refuses a kernel without seccomp, or whose filters cannot return an errno', () => {
    const status = 'Name:\tnode\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n';
    const actions = 'kill_process kill_thread trap errno user_notif trace log allow\n';
    assert.equal(kernelSeccompProblem(status, actions), null);
    assert.match(kernelSeccompProblem('Name:\tnode\nNoNewPrivs:\t0\n', null) ?? '', /CONFIG_SECCOMP\)/);
    assert.match(kernelSeccompProblem(status, 'kill_process kill_thread allow\n') ?? '', /CONFIG_SECCOMP_FILTER/);
    // Nothing readable proves nothing: the engine decides, and refuses a profile it cannot apply.
    assert.equal(kernelSeccompProblem(null, null), null);
    assert.equal(kernelSeccompProblem(status, null), null);
  });
});
