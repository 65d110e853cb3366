"""One fleet instance in a container: data, a plan on an SQLite queue, imds-mock, the
agent installed and run by systemd, and the operator's view (status, reduce).

Paths are the container's: the drill's data, queue and results live in
/srv/rangefleet (the host's Container.shared). The operator's commands (gen, plan,
status, reduce) run in the container with a copy of the same binary, so the file://
and sqlite:// URLs in the jobs mean the same thing to them and to the agent.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from . import install as inst
from .container import Container
from .doubles import BinaryServer, ImdsMock
from .wait import wait_for

UNIT = inst.UNIT_NAME
SHARED = inst.SHARED
DATA = f"{SHARED}/data"
QUEUE = f"sqlite://{SHARED}/queue.db"
RESULTS = f"file://{SHARED}/results/"
OPERATOR = "/opt/rangefleet-operator/rangefleet"

# MESSAGE_IDs from docs/operations.md ("The journal").
BOOT = "0d7b5c3a1f9e4d2b8a6c4e2f0a8b6d4c"
JOB_FAILED = "c4a2e0f8d6b4a2c0e8f6d4b2a0c8e6f4"
INTERRUPTION = "8f3c2a1e5b7d4e6f9a0b1c2d3e4f5a6b"
REBALANCE = "2b4d6f8a0c1e3f5a7b9c0d2e4f6a8b0c"
ASG_TERMINATION = "5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b"
DRAINED = "9a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d"
# systemd's own catalog ids (sd-messages.h).
SD_UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"

STATUS_RE = re.compile(r"^(leasing|draining); (\d+) running, (\d+) done, (\d+) failed$")


def config_yaml(concurrency: int = 2, lease_seconds: int = 300, extra: str = "") -> str:
    """An agent.yaml (docs/config.md) for the drill's queue, data and results."""
    return (
        f"queue: {QUEUE}\n"
        f"inputs:\n  - file://{DATA}/\n"
        f"results: {RESULTS}\n"
        f"concurrency: {concurrency}\n"
        f"lease_seconds: {lease_seconds}\n"
        "spot:\n  poll_seconds: 1\n"
        f"{extra}"
    )


class Instance:
    """The drill's instance. Close with stop() (the container is closed by its fixture)."""

    def __init__(self, c: Container, binary: Path, server: BinaryServer):
        self.c = c
        self.binary = binary
        self.server = server
        self.mocks: list[ImdsMock] = []
        self.imds: ImdsMock | None = None
        self.expected: dict[str, object] | None = None
        self.install_log = ""
        c.write(OPERATOR, binary.read_bytes(), 0o755)
        r = c.exec([OPERATOR, "--version"], check=False)
        if r.rc != 0:
            raise AssertionError(
                "the rangefleet binary does not run in the container's Debian root "
                f"(a newer glibc on the build host?):\n{r!r}")

    # ---------------------------------------------------------------- operator

    def op(self, *args: str, timeout: float = 120, check: bool = True):
        return self.c.exec([OPERATOR, *args], timeout=timeout, check=check)

    def gen(self, colors: str, days: str, records: int) -> dict[str, object]:
        self.op("gen", "--out", DATA, "--colors", colors, "--days", days,
                "--records", str(records), "--bad-every", "1000")
        self.expected = json.loads(self.c.path(f"{DATA}/_expected.json").read_text())
        return self.expected

    def plan(self, processor: str, records_per_job: int) -> int:
        r = self.op("plan", f"file://{DATA}/", "--queue", QUEUE, "--results", RESULTS,
                    "--processor", processor, "--records-per-job", str(records_per_job))
        # The agent runs as a dynamic user: the queue and results must be its to write.
        self.c.exec(["chmod", "-R", "a+rwX", SHARED])
        m = re.search(r"planned (\d+) jobs", r.stderr)
        assert m, f"plan said how many jobs:\n{r!r}"
        return int(m.group(1))

    def status(self) -> dict[str, object]:
        r = self.op("status", "--queue", QUEUE, "--results", RESULTS, "--json", timeout=30)
        return json.loads(r.stdout)

    def reduce(self) -> tuple[int, dict[str, object] | None, str]:
        r = self.op("reduce", "--results", RESULTS, "--json", check=False)
        doc = json.loads(r.stdout) if r.stdout.strip() else None
        return r.rc, doc, r.stderr

    def wait_all_done(self, planned: int, timeout: float) -> dict[str, object]:
        def done() -> dict[str, object] | None:
            s = self.status()
            plan = s["plan"]
            return s if plan["done"] == planned else None
        return wait_for(f"all {planned} planned jobs to have a result", done, timeout,
                        interval=1.0, describe=self.describe)

    # ---------------------------------------------------------------- install

    def start_imds(self, config: str, extra: list[str] = ()) -> ImdsMock:
        n = len(self.mocks)
        userdata = self.c.run / f"user-data-{n}.yaml"
        userdata.write_text(inst.render(config, self.server.url, self.server.sha256))
        mock = ImdsMock(self.binary, userdata, self.c.run / f"imds-mock-{n}.log", list(extra))
        self.mocks.append(mock)
        self.imds = mock
        return mock

    def install(self, config: str, imds: ImdsMock, start: bool = True) -> None:
        self.install_log = inst.install(self.c, config, self.server.url, self.server.sha256,
                                        imds.url, start=start)

    def retarget(self, imds: ImdsMock) -> None:
        """Points the installed unit at another imds-mock (daemon-reload, no restart)."""
        self.c.write(inst.DROPIN, inst.dropin(imds.url))
        self.c.exec(["systemctl", "daemon-reload"])

    def stop(self) -> None:
        for m in self.mocks:
            m.stop()

    # ---------------------------------------------------------------- systemd

    def show(self, *props: str) -> dict[str, str]:
        return self.c.show(UNIT, *props)

    def wait_state(self, active: str, sub: str, timeout: float, what: str = "") -> dict[str, str]:
        def reached() -> dict[str, str] | None:
            s = self.show("ActiveState", "SubState", "Result", "NRestarts", "MainPID",
                          "ExecMainStatus", "ExecMainCode", "StatusText")
            return s if (s["ActiveState"], s["SubState"]) == (active, sub) else None
        return wait_for(what or f"{UNIT} to be {active} ({sub})", reached, timeout,
                        interval=0.25, describe=self.describe)

    def status_text(self) -> tuple[str, int, int, int] | None:
        text = self.show("StatusText")["StatusText"]
        m = STATUS_RE.match(text)
        if not m:
            return None
        return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))

    def journal(self, *args: str) -> list[dict[str, object]]:
        return self.c.journal(*args)

    def describe(self) -> str:
        parts = []
        for argv in (["systemctl", "status", UNIT, "--no-pager", "-l"],
                     ["journalctl", "-u", UNIT, "-b", "--no-pager", "-n", "40"]):
            r = self.c.exec(argv, timeout=15, check=False)
            parts.append(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}")
        return "\n".join(parts)

    def summaries(self) -> list[dict[str, object]]:
        d = self.c.shared / "results/_instances"
        return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.exists() else []


def field(entry: dict[str, object], name: str) -> str | None:
    """A journal field as text (journalctl -o json gives byte arrays for binary values)."""
    v = entry.get(name)
    if isinstance(v, list):
        if v and isinstance(v[0], int):
            return bytes(v).decode(errors="replace")
        return str(v[0]) if v else None
    return v if v is None else str(v)


def copy_artifacts(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.glob("*.log"):
        shutil.copy(p, dest / p.name)
    for p in src.glob("user-data-*.yaml"):
        shutil.copy(p, dest / p.name)
