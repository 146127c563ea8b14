"""Escape vectors against the kernel surface, run INSIDE `airlock run` as the untrusted command.

The way out of a container that holds no useful capability is a new user namespace: inside it the process holds
every capability over the namespaces it creates next (mount, network), and so reaches kernel code an unprivileged
process never could — tmpfs and other mounts, raw sockets, interface configuration, netfilter. Each vector makes raw
syscalls through ctypes (no helper binary to be missing or to fail for its own reasons) in a forked child, so a
namespace created by one vector cannot change what the next one sees. Each prints `begin:NAME`, then `NAME=OUTCOME`:
an errno name when the kernel (or seccomp) refused, a word naming what succeeded otherwise.
Usage: python3 kernel_vectors.py NAME...
"""
import ctypes
import errno
import fcntl
import os
import platform
import socket
import struct
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long

SYSCALL_NUMBERS = {
    'x86_64': {
        'clone': 56, 'unshare': 272, 'clone3': 435, 'setns': 308, 'keyctl': 250, 'add_key': 248, 'bpf': 321,
        'perf_event_open': 298, 'userfaultfd': 323, 'io_uring_setup': 425, 'mount': 165, 'pivot_root': 155,
        'open_by_handle_at': 304, 'fsopen': 430, 'init_module': 175, 'kexec_load': 246, 'personality': 135,
    },
    'aarch64': {
        'clone': 220, 'unshare': 97, 'clone3': 435, 'setns': 268, 'keyctl': 219, 'add_key': 217, 'bpf': 280,
        'perf_event_open': 241, 'userfaultfd': 282, 'io_uring_setup': 425, 'mount': 40, 'pivot_root': 41,
        'open_by_handle_at': 265, 'fsopen': 430, 'init_module': 105, 'kexec_load': 104, 'personality': 92,
    },
}
NR = SYSCALL_NUMBERS.get(platform.machine(), {})

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17
# An unprivileged uid inside the container: mapping it (not root, which needs CAP_SETFCAP) as root of a new user
# namespace is what any user may do.
OUTSIDE_UID = 1000


def errname(number):
    return errno.errorcode.get(number, f'errno{number}')


def raw(name, *args):
    """A raw syscall: (return value, errno name or None)."""
    ctypes.set_errno(0)
    ret = LIBC.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return ret, (errname(ctypes.get_errno()) if ret < 0 else None)


def in_child(body):
    """Run `body` in a forked child and return the one line it reports (namespaces stay in the child)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            result = body()
        except OSError as e:
            result = errname(e.errno)
        except Exception as e:  # the report must always arrive
            result = f'error:{type(e).__name__}'
        os.write(write_end, str(result).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b''.join(chunks).decode() or 'no_report'


def reap(ret, err):
    """After a fork-like syscall: the child leaves at once, the parent reaps it and names the outcome."""
    if ret == 0:
        os._exit(0)
    if ret < 0:
        return err
    os.waitpid(ret, 0)
    return 'created'


def enter_user_namespace(extra_flags):
    """As OUTSIDE_UID, unshare a user namespace (plus `extra_flags`) and become its root: '' or where it failed."""
    os.setgroups([])
    os.setresgid(OUTSIDE_UID, OUTSIDE_UID, OUTSIDE_UID)
    os.setresuid(OUTSIDE_UID, OUTSIDE_UID, OUTSIDE_UID)
    # Changing uid made the process undumpable, which hands /proc/self to root; an exec would undo that, so does this.
    LIBC.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    ret, err = raw('unshare', CLONE_NEWUSER | extra_flags)
    if ret < 0:
        return f'unshare:{err}'
    try:
        for file, text in (('setgroups', 'deny'), ('uid_map', f'0 {OUTSIDE_UID} 1'), ('gid_map', f'0 {OUTSIDE_UID} 1')):
            with open(f'/proc/self/{file}', 'w') as f:
                f.write(text)
    except OSError as e:
        return f'{file}:{errname(e.errno)}'
    return ''


# --- creating a user namespace ---------------------------------------------------------------------------------

def v_userns_unshare():
    return in_child(lambda: raw('unshare', CLONE_NEWUSER)[1] or 'created')


def v_userns_clone():
    # clone(flags, stack=0, …) forks onto a copy of the stack, as fork does.
    return in_child(lambda: reap(*raw('clone', CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)))


def v_userns_clone3():
    def body():
        # struct clone_args (version 0, 64 bytes): flags, pidfd, child_tid, parent_tid, exit_signal, stack, size, tls
        args = ctypes.create_string_buffer(struct.pack('=8Q', CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0))
        return reap(*raw('clone3', args, ctypes.c_long(64)))
    return in_child(body)


def v_userns_as_user():
    return in_child(lambda: enter_user_namespace(0) or 'root_in_new_namespace')


# --- what a user namespace would open ----------------------------------------------------------------------------

def v_userns_tmpfs():
    def body():
        failed = enter_user_namespace(CLONE_NEWNS)
        if failed:
            return failed
        if LIBC.mount(b'none', b'/mnt', b'tmpfs', 0, None) != 0:
            return f'mount:{errname(ctypes.get_errno())}'
        return 'mounted'
    return in_child(body)


def v_userns_raw_socket():
    def body():
        failed = enter_user_namespace(CLONE_NEWNET)
        if failed:
            return failed
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
        return 'created'
    return in_child(body)


def v_userns_net_admin():
    def body():
        failed = enter_user_namespace(CLONE_NEWNET)
        if failed:
            return failed
        SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack('16sH', fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack('16sH14x', b'lo', 0))[:18])[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack('16sH14x', b'lo', flags | IFF_UP))
        return 'interface_configured'
    return in_child(body)


def nlmsg(msg_type, flags, seq, payload):
    return struct.pack('=IHHII', 16 + len(payload), msg_type, flags, seq, 0) + payload


def nfgenmsg(family, res_id=0):
    return struct.pack('=BBH', family, 0, socket.htons(res_id))


def nlattr(kind, data):
    length = 4 + len(data)
    return struct.pack('=HH', length, kind) + data + b'\0' * (-length % 4)


def v_userns_nfnetlink():
    """Create an nftables table over netfilter netlink: the subsystem of many recent kernel privilege escalations."""
    def body():
        failed = enter_user_namespace(CLONE_NEWNET)
        if failed:
            return failed
        NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES = 12, 10
        NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
        batch_begin, batch_end, new_table, nlmsg_error = 0x10, 0x11, NFNL_SUBSYS_NFTABLES << 8, 2
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
            s.settimeout(5)
            s.send(
                nlmsg(batch_begin, NLM_F_REQUEST, 1, nfgenmsg(socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES))
                + nlmsg(new_table, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, 2,
                        nfgenmsg(socket.AF_INET) + nlattr(1, b'airlock_escape\0'))
                + nlmsg(batch_end, NLM_F_REQUEST, 3, nfgenmsg(socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES))
            )
            reply = s.recv(65536)
        if len(reply) >= 20 and struct.unpack('=H', reply[4:6])[0] == nlmsg_error:
            code = struct.unpack('=i', reply[16:20])[0]
            return 'table_created' if code == 0 else f'netlink:{errname(-code)}'
        return 'unparsed'
    return in_child(body)


# --- the rest of what the engines' default profiles refuse -------------------------------------------------------

def v_kernel_interfaces():
    """Each call with arguments that do nothing even where it is allowed; the errno says who refused it."""
    calls = [
        ('setns', (-1, 0)),
        ('keyctl', (0, -3, 0)),  # KEYCTL_GET_KEYRING_ID of the session keyring
        ('add_key', (0, 0, 0, 0, -3)),
        ('bpf', (-1, 0, 0)),
        ('perf_event_open', (0, 0, -1, -1, 0)),
        ('userfaultfd', (0,)),
        ('io_uring_setup', (0, 0)),
        ('mount', (0, 0, 0, 0, 0)),
        ('pivot_root', (0, 0)),
        ('open_by_handle_at', (-1, 0, 0)),
        ('fsopen', (0, 0)),
        ('init_module', (0, 0, 0)),
        ('kexec_load', (0, 0, 0, -1)),
    ]

    def one(name, args):
        ret, err = raw(name, *args)
        return err or 'allowed'
    return ','.join(f'{name}={in_child(lambda: one(name, args))}' for name, args in calls)


def v_personality_aslr_off():
    return in_child(lambda: raw('personality', 0x0040000)[1] or 'allowed')  # ADDR_NO_RANDOMIZE


def main(names):
    if not NR:
        for name in names:
            print(f'begin:{name}\n{name}=unsupported_arch:{platform.machine()}', flush=True)
        return
    for name in names:
        print(f'begin:{name}', flush=True)
        print(f'{name}={globals()["v_" + name]()}', flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
