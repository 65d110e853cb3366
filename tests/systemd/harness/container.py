"""A real systemd as PID 1 in new namespaces over the cached Debian root.

How it boots (see boot-container.sh):

    sh (joins a new cgroup) → setpriv (pdeathsig, a smaller bounding set)
      → unshare --pid --mount --uts --ipc --cgroup --fork --kill-child
        → boot-container.sh (overlay, /proc, /sys, cgroup2, /dev, pivot_root)
          → exec /lib/systemd/systemd

The network namespace is the host's: the agent in the container reaches imds-mock and
the binary server on 127.0.0.1, and nothing else is configured. Commands run inside
with `nsenter` into the container's namespaces and root, so `systemctl` and
`journalctl` are the container's own. Files go in through /proc/<pid>/root.

Teardown is by PID: `systemctl poweroff`, then SIGKILL to the container's PID 1 and to
unshare if they are still there after a bounded wait, then the cgroup is removed. If
the harness itself dies, the pdeathsig chain kills unshare and its child, which ends
the PID namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from .wait import WaitTimeout, wait_for

HERE = Path(__file__).resolve().parent.parent
BOOT_SCRIPT = HERE / "boot-container.sh"

# Capabilities the container's PID 1 never gets: it shares the host's kernel and
# network, and must not load modules, set the clock, reconfigure the network or do
# raw I/O. (Dropping them from the bounding set drops them for everything inside.)
DROPPED_CAPS = ["sys_module", "sys_time", "net_admin", "sys_rawio", "audit_control", "wake_alarm"]

BOOT_TIMEOUT = 60.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BootError(RuntimeError):
    """The container did not come up."""


def _cgroup2_base() -> Path:
    """Where to make the container's cgroup: under our own cgroup in the cgroup2 tree."""
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                mount = left.split()[4]
                break
    if mount is None:
        raise BootError(
            "no cgroup2 file system is mounted on the host; systemd in the container "
            "needs one (mount -t cgroup2 none /sys/fs/cgroup/unified, or a unified host)"
        )
    own = "/"
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip()
    return Path(mount) / own.lstrip("/")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Result:
    """What a command in the container did."""

    def __init__(self, argv: list[str], rc: int, stdout: str, stderr: str):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n(exit {self.rc})\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def reap_stale(runs_dir: Path) -> None:
    """Removes what a harness process that was killed outright left behind: its
    containers died with it (pdeathsig), but their empty cgroups and scratch
    directories stay. Only those named after a process that no longer exists."""
    def gone(name: str, prefix: str) -> bool:
        pid = name[len(prefix):].split("-", 1)[0]
        return pid.isdigit() and not Path(f"/proc/{pid}").exists()

    base = _cgroup2_base()
    for cg in base.glob("rangefleet-harness-*"):
        if cg.is_dir() and gone(cg.name, "rangefleet-harness-"):
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True) + [cg]:
                try:
                    d.rmdir()
                except OSError:
                    pass
    for run in runs_dir.glob("rangefleet-systemd-*"):
        if run.is_dir() and gone(run.name, "rangefleet-systemd-"):
            shutil.rmtree(run, ignore_errors=True)


class Container:
    """One booted container. Use as a context manager, or call boot() and close()."""

    _count = 0

    def __init__(self, root: Path, name: str, runs_dir: Path | None = None):
        parent = runs_dir or Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        if Container._count == 0:
            reap_stale(parent)
        Container._count += 1
        self.root = root
        self.name = name
        self.run = Path(tempfile.mkdtemp(prefix=f"rangefleet-systemd-{os.getpid()}-{name}-",
                                         dir=parent))
        self.shared = self.run / "shared"
        self.cgroup = _cgroup2_base() / f"rangefleet-harness-{os.getpid()}-{Container._count}"
        self.unshare: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # the container's PID 1, as the host sees it
        self.boot_seconds: float | None = None

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Container":
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def boot(self, timeout: float = BOOT_TIMEOUT) -> None:
        started = time.monotonic()
        for d in ("upper/etc", "work", "root", "shared"):
            (self.run / d).mkdir(parents=True, exist_ok=True)
        # The shared directory is written by the agent's dynamic user as well.
        os.chmod(self.shared, 0o777)
        (self.run / "upper/etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        self.cgroup.mkdir()
        argv = [
            "/bin/sh",
            "-c",
            'echo $$ >"$0/cgroup.procs" && exec "$@"',
            str(self.cgroup),
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--bounding-set",
            ",".join("-" + c for c in DROPPED_CAPS),
            "--",
            "unshare",
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--cgroup",
            "--fork",
            "--kill-child",
            "--",
            "/bin/bash",
            str(BOOT_SCRIPT),
            str(self.root),
            str(self.run),
        ]
        log = open(self.run / "boot.log", "wb")
        self.unshare = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={"PATH": PATH, "LANG": "C.UTF-8"},
        )
        log.close()
        unshare = self.unshare

        def systemd_pid() -> int | None:
            if unshare.poll() is not None:
                raise BootError(f"unshare exited {unshare.returncode}:\n{self.boot_log()}")
            for child in _children(unshare.pid):
                try:
                    exe = os.readlink(f"/proc/{child}/exe")
                except OSError:
                    continue
                if exe.endswith("/systemd"):
                    return child
            return None

        try:
            self.pid = wait_for("the container's PID 1 to exec systemd", systemd_pid, 15,
                                describe=self.boot_log, fatal=(BootError,))
        except BootError:
            raise
        except WaitTimeout as e:
            raise BootError(str(e)) from None

        def state() -> str | None:
            if not _alive(self.pid):
                raise BootError(f"systemd (pid {self.pid}) died while booting:\n{self.boot_log()}")
            r = self.exec(["systemctl", "is-system-running"], timeout=10, check=False)
            s = r.stdout.strip()
            if s in ("running", "degraded", "maintenance", "stopping", "offline"):
                return s
            return None

        try:
            s = wait_for("systemd in the container to finish booting "
                         "(systemctl is-system-running)", state, timeout,
                         interval=0.3, describe=self.describe_boot, fatal=(BootError,))
        except BootError:
            raise
        except WaitTimeout as e:
            raise BootError(str(e)) from None
        if s != "running":
            raise BootError(f"systemd booted into state {s!r}, not 'running':\n"
                            + self.describe_boot())
        self.boot_seconds = time.monotonic() - started

    def close(self, keep: Path | None = None) -> None:
        """Stops everything this container started, by PID. With `keep`, first saves the
        container's journal there (for a failed drill)."""
        if keep is not None and self.pid is not None and _alive(self.pid):
            keep.mkdir(parents=True, exist_ok=True)
            r = self.exec(["journalctl", "-b", "--no-pager", "-o", "short-precise"],
                          timeout=30, check=False)
            (keep / "journal.txt").write_text(r.stdout + r.stderr)
            r = self.exec(["journalctl", "-b", "--no-pager", "-o", "json"],
                          timeout=30, check=False)
            (keep / "journal.json").write_text(r.stdout)
            shutil.copy(self.run / "boot.log", keep / "boot.log")
        unshare = self.unshare
        if unshare is not None and unshare.poll() is None:
            if self.pid is not None and _alive(self.pid):
                self.exec(["systemctl", "poweroff", "--no-block"], timeout=10, check=False)
            try:
                unshare.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # PID 1 of the namespace: killing it kills everything in it.
                if self.pid is not None and _ppid(self.pid) == unshare.pid:
                    os.kill(self.pid, signal.SIGKILL)
                unshare.kill()
                try:
                    unshare.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    raise RuntimeError(
                        f"unshare (pid {unshare.pid}) survived SIGKILL for 10 s"
                    ) from None
        self._remove_cgroup()
        shutil.rmtree(self.run, ignore_errors=True)

    def _remove_cgroup(self) -> None:
        if not self.cgroup.exists():
            return

        def removed() -> bool:
            for d in sorted((p for p in self.cgroup.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True):
                try:
                    d.rmdir()
                except OSError:
                    pass
            try:
                self.cgroup.rmdir()
            except OSError:
                return False
            return True

        wait_for(f"the container's cgroup {self.cgroup} to empty and go", removed, 10)

    # ---------------------------------------------------------------- inside

    def exec(self, argv: list[str], timeout: float = 30, check: bool = True,
             input: bytes | str | None = None, env: dict[str, str] | None = None) -> Result:
        """Runs argv in the container (its namespaces and root), as root, with a clean
        environment. Raises on a non-zero exit when `check`."""
        assert self.pid is not None, "the container is not booted"
        environment = ["PATH=" + PATH, "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
                       "TERM=dumb"]
        environment += [f"{k}={v}" for k, v in (env or {}).items()]
        full = ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-C", "-r", "-w",
                "--", "/usr/bin/env", "-i", *environment, *argv]
        if isinstance(input, str):
            input = input.encode()
        try:
            p = subprocess.run(full, input=input, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise WaitTimeout(
                f"timed out after {timeout:.0f} s waiting for `{' '.join(argv)}` in the container"
                f"\n--- stdout\n{(e.stdout or b'').decode(errors='replace')}"
                f"--- stderr\n{(e.stderr or b'').decode(errors='replace')}"
            ) from None
        r = Result(argv, p.returncode, p.stdout.decode(errors="replace"),
                   p.stderr.decode(errors="replace"))
        if check and r.rc != 0:
            raise AssertionError(f"command failed in the container:\n{r!r}")
        return r

    def sh(self, script: str, **kw: object) -> Result:
        return self.exec(["/bin/sh", "-c", script], **kw)  # type: ignore[arg-type]

    def processes(self) -> list[str]:
        """The command lines of the container's processes (read from the host's /proc,
        so the container needs no ps), arguments joined by spaces."""
        assert self.pid is not None
        ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                if os.readlink(p / "ns/pid") != ns:
                    continue
                cmdline = (p / "cmdline").read_bytes()
            except OSError:
                continue
            out.append(cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"))
        return out

    def path(self, inside: str) -> Path:
        """The host's way to a path in the container (through /proc/<pid>/root)."""
        assert self.pid is not None
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def write(self, inside: str, content: str | bytes, mode: int = 0o644) -> None:
        p = self.path(inside)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        p.write_bytes(data)
        os.chmod(p, mode)

    # ---------------------------------------------------------------- systemd

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p A,B unit` as a dict."""
        r = self.exec(["systemctl", "show", unit, "-p", ",".join(props)], timeout=15)
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def journal(self, *args: str, timeout: float = 30) -> list[dict[str, object]]:
        """`journalctl -o json ARGS` as a list of entries."""
        r = self.exec(["journalctl", "--no-pager", "-o", "json", *args], timeout=timeout,
                      check=False)
        if r.rc != 0 and r.stdout.strip():
            raise AssertionError(f"journalctl failed:\n{r!r}")
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def describe_boot(self) -> str:
        if self.pid is None or not _alive(self.pid):
            return self.boot_log()
        parts = []
        for argv in (["systemctl", "is-system-running"],
                     ["systemctl", "list-jobs", "--no-pager"],
                     ["systemctl", "--failed", "--no-pager"],
                     ["journalctl", "-b", "--no-pager", "-n", "60"]):
            r = self.exec(argv, timeout=10, check=False)
            parts.append(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}")
        return "\n".join(parts)

    def boot_log(self) -> str:
        try:
            text = (self.run / "boot.log").read_text(errors="replace")
        except OSError:
            text = ""
        return f"--- boot.log\n{text}"
