"""Assertions and journal helpers the drills share."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from .container import Container
from .doubles import BinaryServer
from .fleet import Instance, copy_artifacts, field


def mono(entry: dict[str, object]) -> int:
    """An entry's __MONOTONIC_TIMESTAMP (µs, the same clock as time.monotonic())."""
    return int(field(entry, "__MONOTONIC_TIMESTAMP"))


def messages(entries: list[dict[str, object]]) -> str:
    return "\n".join(f"{field(e, '__MONOTONIC_TIMESTAMP')} {field(e, 'SYSLOG_IDENTIFIER')}"
                     f"[{field(e, '_PID')}]: {field(e, 'MESSAGE')}" for e in entries)


def assert_exact_taxi(i: Instance) -> dict[str, object]:
    """reduce exits 0 (every planned job has exactly one result) and the merged
    taxi-stats totals equal gen's _expected.json."""
    rc, doc, stderr = i.reduce()
    assert rc == 0, f"reduce: every planned job has exactly one result (exit {rc}):\n{stderr}"
    assert doc is not None
    assert doc["total"] == i.expected["total"], (
        "the merged totals equal gen's _expected.json:\n"
        f"reduce: {json.dumps(doc['total'])}\nexpected: {json.dumps(i.expected['total'])}")
    return doc


def sum_exec_bytes(doc: dict[str, object]) -> int:
    """The sum of the "bytes" of every exec output in reduce --json (by job id)."""
    outputs = doc.get("total") or {}
    assert outputs and all(isinstance(v, dict) and "bytes" in v for v in outputs.values()), (
        f"exec outputs by job id in reduce --json's total: {json.dumps(doc)[:2000]}")
    return sum(v["bytes"] for v in outputs.values())


# What the session cost, for conftest's summary: the root, and each container's boot.
TIMINGS: dict[str, object] = {"boots": []}


def artifacts_dir() -> Path:
    default = Path.home() / ".cache" / "rangefleet" / "systemd-artifacts"
    return Path(os.environ.get("RANGEFLEET_SYSTEMD_ARTIFACTS", default))


@contextlib.contextmanager
def shared_instance(name: str, root_path: Path, binary: Path, server: BinaryServer,
                    session) -> Iterator[Instance]:
    """A container and instance for a module's drills (one scene, several checks).
    Keeps the journal when any drill failed meanwhile."""
    c = Container(root_path, name)
    failed_before = session.testsfailed
    try:
        c.boot()
    except BaseException:
        c.close()
        raise
    TIMINGS["boots"].append(round(c.boot_seconds or 0, 2))
    i = Instance(c, binary, server)
    try:
        yield i
    finally:
        keep = None
        if session.testsfailed > failed_before:
            keep = artifacts_dir() / name
            copy_artifacts(c.run, keep)
        i.stop()
        c.close(keep=keep)
