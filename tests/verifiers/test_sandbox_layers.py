"""Each OS-level layer of the sandbox, tested with the layers above it switched off.

The audit hook and the static checks are Python-level; these tests turn them off (and,
layer by layer, seccomp and the user switch) to show that what is left still holds:
privileges, RLIMIT_NPROC, seccomp, the network namespace, the private mount namespace,
the scrubbed environment. Needs root for the user switch and namespaces; the pool's
isolation report says what the machine granted, and tests skip what it did not.
"""

from __future__ import annotations

import ast
import errno
import os
from collections.abc import Iterator

import pytest

from verifiers.sandbox import SandboxJob, SandboxLimits, SandboxPool, Status

OS_ONLY = SandboxLimits(static_checks=False, audit_hook=False, wall_s=3.0, cpu_s=2.0)
NO_SECCOMP = SandboxLimits(static_checks=False, audit_hook=False, seccomp=False, wall_s=3.0)
# Root inside the child, nothing but the namespaces: shows the namespaces on their own.
NAMESPACES_ONLY = SandboxLimits(
    static_checks=False, audit_hook=False, seccomp=False, drop_privileges=False, wall_s=3.0
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="user switch and namespaces need root")


@pytest.fixture(scope="module")
def os_only() -> Iterator[SandboxPool]:
    with SandboxPool(workers=1, limits=OS_ONLY) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def no_seccomp() -> Iterator[SandboxPool]:
    with SandboxPool(workers=1, limits=NO_SECCOMP) as sandbox:
        yield sandbox


def _errno_of(pool: SandboxPool, code: str) -> int | None:
    """Run `code`, which must raise OSError; its errno, via the value of a try/except."""
    wrapped = (
        f"try:\n    {code}\n    outcome = None\n"
        "except OSError as error:\n    outcome = error.errno\noutcome"
    )
    result = pool.run(wrapped)
    assert result.status is Status.OK, result
    return None if result.value_repr == "None" else int(result.value_repr or "0")


def test_isolation_report_names_every_layer(os_only: SandboxPool) -> None:
    report = os_only.isolation
    for key in ("user", "namespaces", "seccomp", "audit_hook"):
        assert key in report, report
    assert report["audit_hook"] == "off", report


@needs_root
def test_jobs_run_as_nobody_without_groups(os_only: SandboxPool) -> None:
    result = os_only.run("import os\n(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())")
    assert result.value_repr == "(65534, 65534, 65534, [])", result


def test_seccomp_refuses_fork_exec_and_kill(os_only: SandboxPool) -> None:
    if os_only.isolation["seccomp"] != "deny filter":
        pytest.skip(f"seccomp not available: {os_only.isolation['seccomp']}")
    codes = {
        "fork": "import os\n    os.fork()",
        "exec": "import os\n    os.execv('/bin/true', ['true'])",
        "kill": "import os\n    os.kill(os.getppid(), 0)",
    }
    seen = {name: _errno_of(os_only, code) for name, code in codes.items()}
    assert seen == dict.fromkeys(codes, errno.EPERM), seen


@needs_root
def test_rlimit_nproc_refuses_fork_without_seccomp(no_seccomp: SandboxPool) -> None:
    # As nobody, RLIMIT_NPROC=0 binds: fork fails with EAGAIN.
    assert _errno_of(no_seccomp, "import os\n    os.fork()") == errno.EAGAIN


@needs_root
def test_nobody_cannot_signal_the_supervisor(no_seccomp: SandboxPool) -> None:
    assert _errno_of(no_seccomp, "import os\n    os.kill(os.getppid(), 0)") == errno.EPERM


@needs_root
def test_network_namespace_has_no_route() -> None:
    with SandboxPool(workers=1, limits=NAMESPACES_ONLY) as pool:
        if "network" not in pool.isolation:
            pytest.skip(f"no network namespace: {pool.isolation}")
        code = "import socket\n    socket.create_connection(('1.1.1.1', 80), timeout=2)"
        assert _errno_of(pool, code) == errno.ENETUNREACH
        interfaces = pool.run("import socket\n[name for _, name in socket.if_nameindex()]")
        assert interfaces.value_repr == "['lo']", interfaces


@needs_root
def test_etc_is_hidden_and_read_only(os_only: SandboxPool) -> None:
    listing = os_only.run("import os\nos.listdir('/etc')")
    assert listing.value_repr == "[]", f"/etc visible in the sandbox: {listing}"
    assert _errno_of(os_only, "open('/etc/cron.d', 'w')") in (errno.EROFS, errno.EACCES)


@needs_root
def test_tmp_is_private_to_the_sandbox(os_only: SandboxPool) -> None:
    probe = f"/tmp/selfplay-layer-probe-{os.getpid()}"
    result = os_only.run(f"open({probe!r}, 'w').write('x')")
    assert result.status is Status.OK, result
    assert not os.path.exists(probe), f"{probe} written by the sandbox appeared on the host"


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFPLAY_TEST_SECRET", "hunter2")
    with SandboxPool(workers=1, limits=OS_ONLY) as pool:
        result = pool.run("import os\nsorted(os.environ.items())")
    assert "hunter2" not in (result.value_repr or ""), result.value_repr
    names = {name for name, _ in ast.literal_eval(result.value_repr or "[]")}
    assert names <= {"HOME", "TMPDIR", "LANG", "PATH"}, names


def test_each_job_gets_a_new_empty_workdir(os_only: SandboxPool) -> None:
    code = "import os\nopen('mine', 'w').close()\n(os.getcwd(), sorted(os.listdir('.')))"
    first, second = os_only.run_many([SandboxJob(code), SandboxJob(code)])
    assert first.value_repr and second.value_repr, (first, second)
    first_dir, first_files = ast.literal_eval(first.value_repr)
    second_dir, second_files = ast.literal_eval(second.value_repr)
    assert first_dir != second_dir, (first_dir, second_dir)
    assert first_files == second_files == ["mine"], (first_files, second_files)


def test_host_environment_never_reaches_the_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFPLAY_TEST_SECRET", "hunter2")
    with SandboxPool(workers=1, limits=OS_ONLY) as pool:
        pid = pool.worker_pids[0]
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
    assert b"hunter2" not in environ, environ
