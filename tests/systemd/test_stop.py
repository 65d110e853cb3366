"""Drill 3: `systemctl stop` while long jobs run. One scene, several checks.

Four exec jobs of 5,000 records, all four in flight at once. Yellow jobs read their
records, then take 6 s; green jobs wait before reading (for the harness's "fast" flag,
set only after the stop), so they cannot finish before any deadline. The stop comes
once both yellow steps are past their input and sleeping and both green ones are
waiting. Then the unit is started again, the released jobs are taken, and reduce must
be exact.
"""

from __future__ import annotations

import json
import time

import pytest

from harness.checks import messages, mono, shared_instance, sum_exec_bytes
from harness.fleet import DRAINED, UNIT, config_yaml, field
from harness.wait import wait_for

pytestmark = pytest.mark.drill

TIMEOUT_STOP_SEC = 110  # the unit's
SIGTERM_DRAIN_SEC = 90  # the agent's SIGTERM budget (docs/operations.md, the unit)
DRAIN_MARGIN_SEC = 20  # spot.drain_margin_seconds' default

SLOW_STEP = """
case "$RANGEFLEET_JOB_ID" in
color=yellow/*) n=$(wc -c); sleep 6 ;;
*) [ -e /srv/rangefleet/fast ] || sleep 600; n=$(wc -c) ;;
esac
printf '{"bytes": %s}\\n' "$n"
"""


class Stopped:
    """What the scene saw."""


@pytest.fixture(scope="module")
def stopped(root, rangefleet_bin, binary_server, request):
    with shared_instance("stop", root.path, rangefleet_bin, binary_server,
                         request.session) as i:
        s = Stopped()
        s.i = i
        s.expected = i.gen("yellow,green", "2016-01-01", 10_000)
        s.planned = i.plan("exec", 5_000)
        assert s.planned == 4, s.planned
        extra = ("processors:\n  exec:\n    argv: " + json.dumps(["/bin/sh", "-c", SLOW_STEP])
                 + "\n    timeout_seconds: 900\n")
        config = config_yaml(concurrency=4, extra=extra)
        i.install(config, i.start_imds(config))
        i.wait_state("active", "running", 60)

        def all_in_their_sleep():
            sleeping = i.c.processes()
            return sleeping if (sleeping.count("sleep 6"), sleeping.count("sleep 600")) == (
                2, 2) else None

        wait_for("both yellow steps sleeping after reading, both green ones waiting",
                 all_in_their_sleep, 60, interval=0.2, describe=i.describe)
        s.before = i.status_text()
        s.pid = i.show("MainPID")["MainPID"]
        s.stop_started = time.monotonic()
        s.stop = i.c.exec(["systemctl", "stop", UNIT], timeout=TIMEOUT_STOP_SEC + 30,
                          check=False)
        s.took = time.monotonic() - s.stop_started
        s.after = i.show("ActiveState", "SubState", "Result", "ExecMainStatus",
                         "ExecMainCode", "NRestarts")
        s.agent = i.journal("-u", "rangefleet-agent", "-b", f"_PID={s.pid}")
        s.systemd = i.journal("-u", "rangefleet-agent", "-b", "_PID=1")
        s.summaries = i.summaries()

        # Started again: the released jobs are taken and finished.
        (i.c.shared / "fast").touch()
        i.c.exec(["systemctl", "start", UNIT], timeout=60)
        i.wait_all_done(s.planned, 120)
        s.reduce = i.reduce()
        yield s


def signal_at(s: Stopped) -> int:
    got = [e for e in s.agent if field(e, "MESSAGE") == "signal received: draining"]
    assert len(got) == 1, messages(s.agent)
    return mono(got[0])


def released(s: Stopped) -> list[dict[str, object]]:
    return [e for e in s.agent if field(e, "EVENT") == "job_released"
            and field(e, "WHY") == "released while draining"]


def test_stop_exits_0_within_timeout_stop_sec(stopped: Stopped):
    s = stopped
    assert s.stop.rc == 0, s.stop
    assert (s.after["ActiveState"], s.after["SubState"]) == ("inactive", "dead"), s.after
    assert s.after["Result"] == "success" and s.after["ExecMainStatus"] == "0", s.after
    assert s.after["ExecMainCode"] == "1", f"exited by itself, not by a signal: {s.after}"
    assert s.after["NRestarts"] == "0", s.after
    assert s.took < TIMEOUT_STOP_SEC, f"stop took {s.took:.1f} s"
    sd = messages(s.systemd)
    assert f"Killing process {s.pid} " not in sd, f"systemd never had to kill the agent:\n{sd}"
    assert "timed out" not in sd, sd
    drained = [e for e in s.agent if field(e, "MESSAGE_ID") == DRAINED]
    assert len(drained) == 1, messages(s.agent)
    assert len(s.summaries) == 1 and s.summaries[0]["interruption"]["kind"] == "sigterm", \
        s.summaries
    print(f"systemctl stop took {s.took:.1f} s")


def test_stop_finishes_the_jobs_that_fit(stopped: Stopped):
    s = stopped
    t = signal_at(s)
    done_after = [e for e in s.agent if field(e, "EVENT") == "job_done" and mono(e) > t]
    assert [field(e, "JOB_ID").split("/")[0] for e in done_after] == ["color=yellow"] * 2, \
        messages(s.agent)
    assert s.before == ("leasing", 4, 0, 0), s.before
    assert s.summaries[0]["done"] == 2, s.summaries[0]


def test_released_jobs_are_taken_after_a_restart_and_reduce_is_exact(stopped: Stopped):
    s = stopped
    rel = released(s)
    assert rel and all(field(e, "JOB_ID").startswith("color=green/") for e in rel), \
        messages(s.agent)
    assert s.summaries[0]["released"] == len(rel), s.summaries[0]
    rc, doc, stderr = s.reduce
    assert rc == 0, f"reduce exit {rc}:\n{stderr}"
    assert doc["coverage"]["missing"] == [] and doc["coverage"]["planned"] == s.planned, doc
    data_bytes = (s.expected["total"]["records"] + s.expected["total"]["bad_records"]) * 80
    assert sum_exec_bytes(doc) == data_bytes, "the exec outputs add up to the data's bytes"


def test_stop_releases_the_jobs_that_cannot_finish_by_the_cutoff(stopped: Stopped):
    """docs/operations.md (Draining): a job that cannot finish is released at once, and
    an exec job that has all its input (its progress is the bytes read) at the latest at
    the cutoff, the deadline minus the drain margin; never left to systemd's kill."""
    s = stopped
    t = signal_at(s)
    rel = released(s)
    assert rel
    late = max(mono(e) for e in rel) - t
    cutoff = (SIGTERM_DRAIN_SEC - DRAIN_MARGIN_SEC) * 1_000_000
    assert late < cutoff + 5_000_000, f"released {late / 1e6:.1f} s after SIGTERM"


def test_the_agent_stops_its_exec_children_itself(stopped: Stopped):
    s = stopped
    kills = [field(e, "MESSAGE") for e in s.systemd if "Killing process" in field(e, "MESSAGE")]
    assert not kills, "systemd had to kill what the agent left:\n" + "\n".join(kills)
