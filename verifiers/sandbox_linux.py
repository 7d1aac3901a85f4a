"""Linux kernel features the sandbox supervisor uses through libc (Python 3.11 has no wrappers).

- `enter_namespaces`: a new network namespace (no interfaces but a down loopback, so no
  network at all) and a new mount namespace in which /tmp, /var/tmp and /dev/shm are
  fresh size-capped tmpfs and secret-bearing directories (/etc, /root, /home) are hidden
  under empty read-only tmpfs. As root this is `unshare(CLONE_NEWNET | CLONE_NEWNS)`; as
  an ordinary user it is tried inside a new user namespace, which many kernels allow.
- `die_with_parent` / `no_new_privileges`: prctl calls for the per-job child.
- `seccomp_deny_filter` / `SeccompFilter`: a classic-BPF seccomp filter that makes the
  syscalls a contained snippet never needs (process creation, exec, signals to other
  processes, sockets, ptrace, mounts, namespaces, io_uring, bpf, ...) fail with EPERM,
  so they stay closed even if the Python audit hook were defeated. x86-64 only; other
  architectures report it as not enforced.

Every function returns whether it worked or raises OSError with errno; callers record
what was enforced in the pool's isolation report instead of failing hard.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

_libc = ctypes.CDLL(None, use_errno=True)
# Typed once here, so a forked child calls prctl without building ctypes objects (each new
# object it touches is a copy-on-write page fault, and a child lives for one job only).
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

# Syscalls (x86-64 numbers) that fail with EPERM inside a job; see the module docstring.
# setuid and friends stay allowed: the child drops to the sandbox user after loading the
# filter, and an unprivileged process cannot use them to regain anything.
_DENIED_X86_64 = {
    "socket": 41, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "execve": 59,
    "kill": 62, "ptrace": 101, "rt_sigqueueinfo": 129, "mknod": 133,
    "pivot_root": 155, "chroot": 161, "mount": 165, "umount2": 166, "reboot": 169,
    "init_module": 175, "tkill": 200, "tgkill": 234, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "mknodat": 259, "unshare": 272,
    "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313, "bpf": 321,
    "execveat": 322, "userfaultfd": 323, "pidfd_send_signal": 424, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "fsopen": 430,
    "fsmount": 432, "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438,
    "mount_setattr": 442,
}  # fmt: skip
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO_EPERM = 0x00050000 | 1
_RET_KILL_PROCESS = 0x80000000


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _write_id_map(path: str, inside: int, outside: int) -> None:
    with open(path, "w") as handle:
        handle.write(f"{inside} {outside} 1\n")


def enter_namespaces(
    network: bool, private_tmp: bool, mask: tuple[str, ...], keep: tuple[str, ...], tmp_mb: int
) -> dict[str, str]:
    """Move the calling (single-threaded) process into new namespaces; returns what happened.

    `keep` lists paths that must stay visible (the Python stdlib and this package): a
    directory in `mask` that contains one of them is left alone, and the report says so.
    """
    report: dict[str, str] = {}
    flags = (CLONE_NEWNET if network else 0) | (CLONE_NEWNS if (private_tmp or mask) else 0)
    if not flags:
        return report
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(flags)
        report["namespaces"] = "unshare as root" if uid == 0 else "unshare"
    except OSError as root_error:
        try:
            # An unprivileged user may still own a user namespace and, inside it, the rest.
            unshare(flags | CLONE_NEWUSER)
            with open("/proc/self/setgroups", "w") as handle:
                handle.write("deny")
            _write_id_map("/proc/self/uid_map", uid, uid)
            _write_id_map("/proc/self/gid_map", gid, gid)
            report["namespaces"] = "unshare in a user namespace"
        except OSError as user_error:
            report["namespaces"] = f"not available: {root_error}; {user_error}"
            return report
    if network:
        report["network"] = "new network namespace (no interfaces up)"
    if flags & CLONE_NEWNS:
        report.update(_private_mounts(private_tmp, mask, keep, tmp_mb))
    return report


def _private_mounts(
    private_tmp: bool, mask: tuple[str, ...], keep: tuple[str, ...], tmp_mb: int
) -> dict[str, str]:
    report: dict[str, str] = {}
    try:
        # Without this, a tmpfs mounted below could propagate back to the host's namespace.
        mount("none", "/", None, MS_REC | MS_PRIVATE)
    except OSError as error:
        return {"mounts": f"not changed (could not make / private: {error})"}
    if private_tmp:
        done = []
        for target in ("/tmp", "/var/tmp", "/dev/shm"):
            if not os.path.isdir(target):
                continue
            try:
                options = f"size={tmp_mb}m,mode=1777"
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
                done.append(target)
            except OSError as error:
                report[f"tmp {target}"] = f"not private: {error}"
        report["private_tmp"] = f"{', '.join(done)} on private {tmp_mb} MB tmpfs"
    masked, skipped = [], []
    for target in mask:
        real = os.path.realpath(target)
        if not os.path.isdir(real):
            continue
        if any(os.path.commonpath([real, needed]) == real for needed in keep):
            skipped.append(target)
            continue
        try:
            mount("tmpfs", real, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")
            masked.append(target)
        except OSError as error:
            skipped.append(f"{target} ({error})")
    if masked:
        report["masked"] = ", ".join(masked)
    if skipped:
        report["not_masked"] = ", ".join(skipped) + " (holds the Python runtime or failed)"
    return report


def die_with_parent(signal_number: int) -> None:
    _check(_prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def no_new_privileges() -> None:
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


def seccomp_deny_filter() -> bytes | None:
    """The BPF program as bytes (built once per supervisor), or None off x86-64."""
    if platform.machine() != "x86_64":
        return None
    numbers = sorted(_DENIED_X86_64.values())
    program = [
        _instruction(_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _instruction(_BPF_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _instruction(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),  # a foreign ABI: no way around
        _instruction(_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    # The x32 ABI reuses the same numbers with a high bit set; deny it wholesale.
    program.append(_instruction(_BPF_JGE_K, len(numbers) + 1, 0, _X32_SYSCALL_BIT))
    for index, number in enumerate(numbers):
        # Jump over the remaining comparisons and the ALLOW to the final DENY.
        program.append(_instruction(_BPF_JEQ_K, len(numbers) - index, 0, number))
    program.append(_instruction(_BPF_RET_K, 0, 0, _RET_ALLOW))
    program.append(_instruction(_BPF_RET_K, 0, 0, _RET_ERRNO_EPERM))
    return b"".join(program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompFilter:
    """A filter program laid out in memory once (in the supervisor), installable per child."""

    def __init__(self, program: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))
        self._address = ctypes.addressof(self._fprog)

    def install(self) -> None:
        """Load into the calling thread (after no_new_privileges, or with CAP_SYS_ADMIN)."""
        result = _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._address, 0, 0)
        _check(result, "prctl(PR_SET_SECCOMP)")
