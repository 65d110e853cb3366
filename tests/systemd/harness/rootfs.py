"""The container's root file system: a minimal Debian made by debootstrap, cached
outside the repository and rebuilt when its recipe changes.

The cache lives in $RANGEFLEET_SYSTEMD_ROOT_CACHE (default
~/.cache/rangefleet/systemd-root), one directory per recipe key: a hash of
packages.txt, the suite, the mirror, the variant and the source of `customise`.
A build goes to a hidden directory first and is renamed into place when complete,
so an interrupted build is never used; other keys' roots are removed after a
successful build. Containers mount the root read-only under an overlay, so drills
never change it.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PACKAGES_FILE = HERE / "packages.txt"

# The host's glibc must be no newer than the root's: the agent binary built on the
# host runs inside. bookworm has glibc 2.36, the same as the development machines.
SUITE = "bookworm"
MIRROR = os.environ.get("RANGEFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
VARIANT = "minbase"
BUILD_TIMEOUT = 900

# Units that have no business in a test container sharing the host's network and
# kernel: consoles and gettys (there is no console), the audit socket (the host's
# audit stream), timers that would reach the network (apt) or touch disks, kernel
# file systems and module loading.
MASKED = [
    "console-getty.service",
    "getty@.service",
    "serial-getty@.service",
    "container-getty@.service",
    "systemd-journald-audit.socket",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-pstore.service",
    "modprobe@.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
]


class RootError(RuntimeError):
    """The root could not be built."""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "rangefleet" / "systemd-root"
    return Path(os.environ.get("RANGEFLEET_SYSTEMD_ROOT_CACHE", default))


def packages() -> list[str]:
    names = []
    for line in PACKAGES_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise RootError(f"{PACKAGES_FILE} lists no packages")
    return names


def customise(root: Path) -> None:
    """What the harness changes in debootstrap's result (part of the cache key)."""
    (root / "etc/hostname").write_text("rangefleet-harness\n")
    # Each container writes its own machine-id into its overlay.
    (root / "etc/machine-id").write_text("")
    system = root / "etc/systemd/system"
    for wants in system.glob("*.wants/getty@*.service"):
        wants.unlink()
    for unit in MASKED:
        link = system / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    # A watchdog kill is SIGABRT: no core dump, so no host core_pattern helper runs.
    conf = root / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "50-rangefleet-harness.conf").write_text(
        "# tests/systemd: no core dumps (core_pattern is the host's).\n"
        "[Manager]\nDefaultLimitCORE=0\n"
    )
    # Downloaded packages and lists: 40 MB nobody reads.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()


def recipe_key() -> str:
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "variant": VARIANT,
        "packages": packages(),
        "customise": inspect.getsource(customise),
        "masked": MASKED,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


@dataclass
class Root:
    """A ready root: where, which recipe, and whether this call built it."""

    path: Path
    key: str
    built: bool
    seconds: float


def ensure_root() -> Root:
    """Returns the cached root for the current recipe, building it when missing."""
    key = recipe_key()
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    final = base / key[:16]
    started = time.monotonic()
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(final, key):
            return Root(final / "root", key, False, time.monotonic() - started)
        building = base / f".build-{key[:16]}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        try:
            _debootstrap(building / "root", building / "debootstrap.log")
            customise(building / "root")
            seconds = time.monotonic() - started
            (building / "stamp.json").write_text(
                json.dumps(
                    {
                        "key": key,
                        "suite": SUITE,
                        "mirror": MIRROR,
                        "packages": packages(),
                        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "build_seconds": round(seconds, 1),
                    },
                    indent=2,
                )
                + "\n"
            )
            if final.exists():
                shutil.rmtree(final)
            building.rename(final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        # Roots of older recipes (and builds that died) only take space.
        for other in base.iterdir():
            if other.is_dir() and other != final:
                shutil.rmtree(other, ignore_errors=True)
        return Root(final / "root", key, True, seconds)


def _complete(final: Path, key: str) -> bool:
    try:
        stamp = json.loads((final / "stamp.json").read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("key") == key and (final / "root/lib/systemd/systemd").exists()


def _debootstrap(target: Path, log: Path) -> None:
    tool = shutil.which("debootstrap")
    if tool is None:
        raise RootError(
            "debootstrap is not installed; scripts/test-systemd installs it "
            "(apt-get install debootstrap)"
        )
    argv = [
        tool,
        f"--variant={VARIANT}",
        "--include=" + ",".join(packages()),
        SUITE,
        str(target),
        MIRROR,
    ]
    with open(log, "wb") as out:
        try:
            rc = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        what = "timed out" if rc is None else f"exited {rc}"
        raise RootError(
            f"debootstrap {what} building the container root ({' '.join(argv)}); "
            f"last lines of {log}:\n" + "\n".join(tail)
        )
