"""Fixtures of the real-systemd drills: the binary (RANGEFLEET_BIN), the cached root,
one freshly booted container per drill, and the instance in it.

Nothing here skips: a missing binary, a root that cannot be built or a container that
does not boot is an error of every drill, with the reason.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness import rootfs
from harness.checks import TIMINGS, artifacts_dir
from harness.container import Container
from harness.doubles import BinaryServer
from harness.fleet import Instance, copy_artifacts

@pytest.fixture(scope="session")
def rangefleet_bin() -> Path:
    value = os.environ.get("RANGEFLEET_BIN")
    if not value:
        raise RuntimeError(
            "RANGEFLEET_BIN is not set: point it at a built rangefleet binary, e.g. "
            "RANGEFLEET_BIN=~/.cache/rangefleet/target/debug/rangefleet scripts/test-systemd")
    path = Path(value).expanduser().resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"RANGEFLEET_BIN={value} is not an executable file")
    return path


@pytest.fixture(scope="session")
def root() -> rootfs.Root:
    if os.geteuid() != 0:
        raise RuntimeError("the systemd harness needs root (namespaces, mounts, cgroups)")
    r = rootfs.ensure_root()
    TIMINGS["root"] = {"built": r.built, "seconds": round(r.seconds, 1), "key": r.key[:16],
                       "path": str(r.path)}
    return r


@pytest.fixture(scope="session")
def binary_server(rangefleet_bin: Path):
    server = BinaryServer(rangefleet_bin)
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def container(root: rootfs.Root, request):
    name = request.node.name.replace("test_", "", 1)[:40]
    c = Container(root.path, name)
    try:
        c.boot()
    except BaseException:
        c.close()
        raise
    TIMINGS["boots"].append(round(c.boot_seconds or 0, 2))
    yield c
    rep = getattr(request.node, "rep_call", None)
    keep = None
    if rep is None or rep.failed:
        keep = artifacts_dir() / request.node.name
        copy_artifacts(c.run, keep)
    c.close(keep=keep)
    if keep is not None:
        print(f"\nartifacts of {request.node.name}: {keep}")


@pytest.fixture
def instance(container: Container, rangefleet_bin: Path, binary_server: BinaryServer):
    i = Instance(container, rangefleet_bin, binary_server)
    yield i
    i.stop()


def pytest_sessionstart(session):
    TIMINGS["started"] = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    started = TIMINGS.pop("started", None)
    if started is not None:
        TIMINGS["session_seconds"] = round(time.monotonic() - started, 1)
    root = TIMINGS.get("root")
    tr = terminalreporter
    tr.section("systemd harness cost")
    if root:
        how = "built now (cold)" if root["built"] else "cached"
        tr.write_line(f"root {root['key']}: {how}, {root['seconds']} s ({root['path']})")
    boots = TIMINGS["boots"]
    if boots:
        tr.write_line(f"container boots: {len(boots)}, {min(boots)}-{max(boots)} s to "
                      "'running'")
    tr.write_line(f"session: {TIMINGS.get('session_seconds')} s")
    out = os.environ.get("RANGEFLEET_SYSTEMD_TIMINGS")
    if out:
        Path(out).write_text(json.dumps(TIMINGS, indent=2) + "\n")
