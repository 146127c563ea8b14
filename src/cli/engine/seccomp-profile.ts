/**
 * The seccomp profile of the sandbox container, as data. Passing a profile to the engine REPLACES its default one, so
 * this profile carries everything the Docker and Podman defaults deny to a container without privileges, and adds
 * what they leave open: new user namespaces (`unshare`/`clone` with `CLONE_NEWUSER`, `clone3`), from which a process
 * regains every capability over a fresh mount and network namespace — tmpfs mounts, raw sockets, netfilter — the
 * kernel surface behind most container-to-host escalations. Pure: no I/O (the file is written by
 * `session/seccomp-file.ts`). The format is the one both engines read (OCI seccomp plus `archMap`, `includes`,
 * `excludes`, `comment`); see docs/container.md#seccomp-profile.
 */

/** The syscall gets an errno instead of running. Both engines and both runtimes (runc, crun) know these two. */
export type SeccompAction = 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';

/** `SCMP_CMP_MASKED_EQ` matches when `(arg & value) === valueTwo` (value is the mask), as libseccomp defines it. */
export type SeccompOperator = 'SCMP_CMP_EQ' | 'SCMP_CMP_NE' | 'SCMP_CMP_MASKED_EQ';

export type SeccompArchitecture =
  | 'SCMP_ARCH_X86_64'
  | 'SCMP_ARCH_X86'
  | 'SCMP_ARCH_X32'
  | 'SCMP_ARCH_AARCH64'
  | 'SCMP_ARCH_ARM'
  | 'SCMP_ARCH_S390X'
  | 'SCMP_ARCH_S390';

/** Native architectures as the engines name them when they evaluate `includes.arches` / `excludes.arches`. */
export type EngineArchitecture = 'amd64' | 'arm64' | 's390x';

export interface SeccompArgument {
  /** Position of the argument (0-5). */
  index: number;
  value: number;
  valueTwo: number;
  op: SeccompOperator;
}

export interface SeccompRule {
  names: string[];
  action: SeccompAction;
  /** The errno an `SCMP_ACT_ERRNO` rule returns. */
  errnoRet?: number;
  /** All must hold (AND); every rule here compares each argument index at most once. */
  args?: SeccompArgument[];
  /** The rule applies only on these native architectures / kernels (evaluated by the engine). */
  includes?: { arches?: EngineArchitecture[]; minKernel?: string };
  excludes?: { arches?: EngineArchitecture[] };
  comment: string;
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO';
  defaultErrnoRet: number;
  /** The engine picks the entry of its own architecture and filters its 32-bit ABIs too. */
  archMap: Array<{ architecture: SeccompArchitecture; subArchitectures: SeccompArchitecture[] }>;
  syscalls: SeccompRule[];
}

export const ERRNO = { EPERM: 1, EINVAL: 22, ENOSYS: 38 } as const;

/** Namespace flags of clone(2) and unshare(2) (include/uapi/linux/sched.h). */
export const CLONE_FLAGS = {
  CLONE_NEWNS: 0x0002_0000,
  CLONE_NEWCGROUP: 0x0200_0000,
  CLONE_NEWUTS: 0x0400_0000,
  CLONE_NEWIPC: 0x0800_0000,
  CLONE_NEWUSER: 0x1000_0000,
  CLONE_NEWPID: 0x2000_0000,
  CLONE_NEWNET: 0x4000_0000,
  /**
   * unshare(2) and clone3(2) only: in clone(2) the low byte of the flags is the exit signal, so this bit is never a
   * namespace request there.
   */
  CLONE_NEWTIME: 0x0000_0080,
} as const;

const CLONE_NAMESPACES = [
  CLONE_FLAGS.CLONE_NEWNS,
  CLONE_FLAGS.CLONE_NEWCGROUP,
  CLONE_FLAGS.CLONE_NEWUTS,
  CLONE_FLAGS.CLONE_NEWIPC,
  CLONE_FLAGS.CLONE_NEWUSER,
  CLONE_FLAGS.CLONE_NEWPID,
  CLONE_FLAGS.CLONE_NEWNET,
];
const UNSHARE_NAMESPACES = [...CLONE_NAMESPACES, CLONE_FLAGS.CLONE_NEWTIME];

/** OR of the flags; `|` on JS numbers is signed 32-bit, CLONE_NEWNET is bit 30, so the sum stays exact. */
function maskOf(flags: readonly number[]): number {
  return flags.reduce((sum, flag) => sum + flag, 0);
}

/** Every namespace a clone(2) may ask for (0x7e020000). */
export const CLONE_NAMESPACE_MASK = maskOf(CLONE_NAMESPACES);
/** Every namespace an unshare(2) may ask for (0x7e020080). */
export const UNSHARE_NAMESPACE_MASK = maskOf(UNSHARE_NAMESPACES);

/** Values of personality(2) a build may use: PER_LINUX, PER_LINUX32, UNAME26 with each, and the query 0xffffffff. */
export const ALLOWED_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] as const;

/** A whitespace-separated list of syscall names, so long lists stay compact and diffable. */
function syscalls(list: string): string[] {
  return list.split(/\s+/).filter((name) => name !== '');
}

const AF_NETLINK = 16;
const NETLINK_AUDIT = 9;

/**
 * Syscalls the sandbox may make with any arguments, grouped by what builds use them for. The 32-bit names (`*32`,
 * `*64` on 32-bit ABIs, `_llseek`, `socketcall`, `ipc`, …) are here for i386 and arm binaries on 64-bit hosts; the
 * runtime resolves every name per architecture and skips those an architecture does not have.
 */
const ALLOWED: Record<string, readonly string[]> = {
  'processes and threads': syscalls(`
    fork vfork execve execveat exit exit_group wait4 waitid waitpid kill tkill tgkill getpid getppid
    gettid getpgid setpgid getpgrp getsid setsid set_tid_address set_robust_list get_robust_list rseq
    futex futex_time64 prctl capget capset getpriority setpriority sched_yield sched_getaffinity
    sched_setaffinity sched_getattr sched_setattr sched_getparam sched_setparam sched_getscheduler
    sched_setscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_rr_get_interval_time64 getcpu membarrier restart_syscall pidfd_open pidfd_send_signal
    process_vm_readv process_vm_writev ioprio_get ioprio_set set_thread_area get_thread_area
  `),
  'self-restriction': ['seccomp', 'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self'],
  credentials: syscalls(`
    getuid geteuid getgid getegid getresuid getresgid getgroups setuid setgid setreuid setregid
    setresuid setresgid setgroups setfsuid setfsgid getuid32 geteuid32 getgid32 getegid32 getresuid32
    getresgid32 getgroups32 setuid32 setgid32 setreuid32 setregid32 setresuid32 setresgid32 setgroups32
    setfsuid32 setfsgid32
  `),
  signals: syscalls(`
    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend rt_sigpending rt_sigtimedwait
    rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo sigaltstack signalfd signalfd4 sigaction
    sigprocmask sigreturn sigsuspend sigpending signal pause alarm
  `),
  memory: syscalls(`
    brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 mlockall munlock munlockall
    remap_file_pages memfd_create pkey_alloc pkey_free pkey_mprotect
  `),
  files: syscalls(`
    open openat openat2 creat close close_range read write readv writev pread64 pwrite64 preadv pwritev
    preadv2 pwritev2 lseek _llseek dup dup2 dup3 pipe pipe2 fcntl fcntl64 flock fsync fdatasync sync
    syncfs sync_file_range fallocate fadvise64 fadvise64_64 readahead truncate truncate64 ftruncate
    ftruncate64 stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64
    fstatfs fstatfs64 access faccessat faccessat2 chmod fchmod fchmodat fchmodat2 chown chown32 fchown
    fchown32 fchownat lchown lchown32 umask link linkat unlink unlinkat symlink symlinkat readlink readlinkat
    rename renameat renameat2 mkdir mkdirat rmdir mknod mknodat getdents getdents64 readdir getcwd chdir
    fchdir utime utimes utimensat utimensat_time64 futimesat getxattr lgetxattr fgetxattr setxattr
    lsetxattr fsetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr
    copy_file_range sendfile sendfile64 splice tee ioctl inotify_init inotify_init1 inotify_add_watch
    inotify_rm_watch fanotify_mark
  `),
  'waiting for I/O': syscalls(`
    select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create epoll_create1
    epoll_ctl epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd2 io_setup io_destroy io_submit
    io_cancel io_getevents
  `),
  time: syscalls(`
    time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64 clock_nanosleep
    clock_nanosleep_time64 nanosleep times getitimer setitimer timer_create timer_delete
    timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
    timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
  `),
  // Reading the clock discipline (glibc's adjtimex, ntp_gettime); changing it needs CAP_SYS_TIME, which is dropped.
  'clock discipline, read only': ['adjtimex', 'clock_adjtime', 'clock_adjtime64'],
  'limits and system information': syscalls(`
    getrlimit ugetrlimit setrlimit prlimit64 getrusage sysinfo uname getrandom
  `),
  sockets: syscalls(`
    socketpair bind connect listen accept accept4 getsockname getpeername getsockopt setsockopt send
    sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64 shutdown socketcall
  `),
  'inter-process communication': syscalls(`
    ipc shmget shmat shmdt shmctl semget semop semtimedop semtimedop_time64 semctl msgget msgsnd msgrcv
    msgctl mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive mq_timedreceive_time64
    mq_notify mq_getsetattr
  `),
};

/** Syscalls that exist on one architecture family only. */
const ALLOWED_PER_ARCHITECTURE: Array<{ arches: EngineArchitecture[]; names: string[] }> = [
  { arches: ['amd64'], names: ['arch_prctl', 'modify_ldt'] },
  {
    arches: ['arm64'],
    names: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'],
  },
  { arches: ['s390x'], names: ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'] },
];

/**
 * Refused with EPERM whatever the arguments, each group with the reason. Anything neither allowed nor listed here
 * gets ENOSYS (the default action): the answer libc and runtimes expect from a kernel that lacks a syscall, so a
 * syscall newer than this list makes them fall back instead of fail.
 */
export const DENIED: ReadonlyArray<{ why: string; names: readonly string[] }> = [
  {
    why: 'joining or building namespaces: the user namespace is the door to every capability inside it',
    names: ['setns'],
  },
  {
    why: 'mounts and root changes (CAP_SYS_ADMIN / CAP_SYS_CHROOT, dropped), including the new mount API',
    names: syscalls(`
    mount umount umount2 pivot_root chroot fsopen fsconfig fsmount fspick move_mount open_tree
    mount_setattr
  `),
  },
  {
    why: 'kernel keyrings are not namespaced: keys of the host and other containers',
    names: ['keyctl', 'add_key', 'request_key'],
  },
  {
    why: 'in-kernel programs, tracing and page-fault handling: large attack surface, classic exploit helpers',
    names: ['bpf', 'perf_event_open', 'userfaultfd', 'lookup_dcookie', 'fanotify_init'],
  },
  {
    why: 'io_uring: a second syscall interface with its own history of privilege escalations',
    names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'],
  },
  {
    why: 'kernel modules, kexec, reboot, swap, accounting and quotas belong to the host',
    names: syscalls(`
    init_module finit_module delete_module create_module query_module get_kernel_syms kexec_load
    kexec_file_load reboot swapon swapoff acct quotactl quotactl_fd
  `),
  },
  {
    why: 'the clock is not namespaced (CAP_SYS_TIME, dropped)',
    names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'],
  },
  {
    why: 'the kernel log and host names (CAP_SYSLOG, CAP_SYS_ADMIN, dropped)',
    names: ['syslog', 'sethostname', 'setdomainname', 'vhangup'],
  },
  {
    why: 'opening files by handle bypasses the mount namespace (the "shocker" escape)',
    names: ['open_by_handle_at', 'name_to_handle_at'],
  },
  {
    why: 'inspecting or steering other processes beyond ptrace (CAP_SYS_PTRACE, dropped)',
    names: ['kcmp', 'process_madvise', 'pidfd_getfd'],
  },
  {
    why: 'NUMA placement of memory (CAP_SYS_NICE, dropped)',
    names: ['mbind', 'set_mempolicy', 'get_mempolicy', 'set_mempolicy_home_node', 'move_pages', 'migrate_pages'],
  },
  {
    why: 'port I/O and PCI access (CAP_SYS_RAWIO, dropped)',
    names: ['ioperm', 'iopl', 'pciconfig_read', 'pciconfig_write', 'pciconfig_iobase'],
  },
  {
    why: 'obsolete interfaces with no use in a build',
    names: syscalls(`
    uselib ustat sysfs _sysctl bdflush nfsservctl vm86 vm86old vmsplice io_pgetevents
  `),
  },
];

function rule(names: string[], action: SeccompAction, comment: string, extra: Partial<SeccompRule> = {}): SeccompRule {
  return { names, action, ...extra, comment };
}

/**
 * clone(2) without any namespace flag is how glibc makes threads and processes: allowed. Each namespace flag is
 * refused with EPERM, one rule per flag because libseccomp can only test a masked argument for equality. The flags
 * are argument 0 everywhere except s390x, where clone(2) takes the stack first and the flags second.
 */
function cloneRules(): SeccompRule[] {
  const variants: Array<{ index: number; on: Pick<SeccompRule, 'includes' | 'excludes'> }> = [
    { index: 0, on: { excludes: { arches: ['s390x'] } } },
    { index: 1, on: { includes: { arches: ['s390x'] } } },
  ];
  return variants.flatMap(({ index, on }) => [
    rule(['clone'], 'SCMP_ACT_ALLOW', 'clone without namespace flags: threads, fork, vfork, posix_spawn', {
      args: [{ index, value: CLONE_NAMESPACE_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      ...on,
    }),
    ...CLONE_NAMESPACES.map((flag) =>
      rule(['clone'], 'SCMP_ACT_ERRNO', `clone into a new namespace (flag 0x${flag.toString(16)})`, {
        errnoRet: ERRNO.EPERM,
        args: [{ index, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
        ...on,
      }),
    ),
  ]);
}

function unshareRules(): SeccompRule[] {
  return [
    rule(['unshare'], 'SCMP_ACT_ALLOW', 'unshare of file table, fs attributes or SysV semaphores only', {
      args: [{ index: 0, value: UNSHARE_NAMESPACE_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    }),
    ...UNSHARE_NAMESPACES.map((flag) =>
      rule(['unshare'], 'SCMP_ACT_ERRNO', `unshare into a new namespace (flag 0x${flag.toString(16)})`, {
        errnoRet: ERRNO.EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      }),
    ),
  ];
}

/**
 * Creating an audit socket is refused with EINVAL, as the engines do without CAP_AUDIT_WRITE: `su` and PAM read that
 * as "no audit" and carry on.
 */
function socketRules(): SeccompRule[] {
  return [
    rule(['socket'], 'SCMP_ACT_ALLOW', 'any socket family but netlink', {
      args: [{ index: 0, value: AF_NETLINK, valueTwo: 0, op: 'SCMP_CMP_NE' }],
    }),
    rule(['socket'], 'SCMP_ACT_ALLOW', 'netlink sockets other than audit', {
      args: [{ index: 2, value: NETLINK_AUDIT, valueTwo: 0, op: 'SCMP_CMP_NE' }],
    }),
    rule(['socket'], 'SCMP_ACT_ERRNO', 'audit netlink socket (CAP_AUDIT_WRITE, dropped)', {
      errnoRet: ERRNO.EINVAL,
      args: [
        { index: 0, value: AF_NETLINK, valueTwo: 0, op: 'SCMP_CMP_EQ' },
        { index: 2, value: NETLINK_AUDIT, valueTwo: 0, op: 'SCMP_CMP_EQ' },
      ],
    }),
  ];
}

/** The profile the sandbox container runs under. The same on every host; the engine picks its architecture. */
export function sandboxSeccompProfile(): SeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: ERRNO.ENOSYS,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
      { architecture: 'SCMP_ARCH_S390X', subArchitectures: ['SCMP_ARCH_S390'] },
    ],
    syscalls: [
      ...Object.entries(ALLOWED).map(([group, names]) => rule([...names], 'SCMP_ACT_ALLOW', group)),
      ...ALLOWED_PER_ARCHITECTURE.map(({ arches, names }) =>
        rule([...names], 'SCMP_ACT_ALLOW', `${arches.join(', ')} only`, { includes: { arches } }),
      ),
      // Kernels before 4.8 let a tracer rewrite a syscall after seccomp had checked it.
      rule(['ptrace'], 'SCMP_ACT_ALLOW', 'debuggers, strace and sanitizers on the sandbox’s own processes', {
        includes: { minKernel: '4.8' },
      }),
      ...ALLOWED_PERSONALITIES.map((persona) =>
        rule(['personality'], 'SCMP_ACT_ALLOW', 'execution domains builds use (linux32, uname26) and the query', {
          args: [{ index: 0, value: persona, valueTwo: 0, op: 'SCMP_CMP_EQ' }],
        }),
      ),
      ...cloneRules(),
      ...unshareRules(),
      // Its flags sit in a struct in memory, out of seccomp's reach; ENOSYS makes glibc (2.34+) fall back to clone.
      rule(['clone3'], 'SCMP_ACT_ERRNO', 'clone3: flags unreadable by seccomp; libc falls back to clone', {
        errnoRet: ERRNO.ENOSYS,
      }),
      ...socketRules(),
      ...DENIED.map(({ why, names }) => rule([...names], 'SCMP_ACT_ERRNO', why, { errnoRet: ERRNO.EPERM })),
    ],
  };
}

/** The profile as the engines read it from `--security-opt seccomp=FILE`. */
export function seccompProfileJson(): string {
  return JSON.stringify(sandboxSeccompProfile(), null, 2) + '\n';
}
