"""Drills 1-5: the agent under a real systemd, installed as cloud-init installs it
(docs/systemd-harness.md). Every assertion reads systemd's own view: `systemctl show`,
`systemctl status` and `journalctl` inside the container."""

from __future__ import annotations

import json
import time

import pytest

from harness.checks import assert_exact_taxi, messages, mono, sum_exec_bytes
from harness.fleet import (
    BOOT,
    DRAINED,
    INTERRUPTION,
    SD_UNIT_STARTED,
    UNIT,
    Instance,
    config_yaml,
    field,
)
from harness.wait import wait_for

pytestmark = pytest.mark.drill

# The unit's own numbers (agent/systemd/rangefleet-agent.service).
WATCHDOG_SEC = 60
TIMEOUT_STOP_SEC = 110
RESTART_SEC = 5

# ------------------------------------------------------------------------ 1. start


def test_start_active_only_after_ready(instance: Instance):
    """Type=notify: `activating (start)` while the agent boots from IMDS, `active
    (running)` only once READY=1 came (after the agent's boot entry), and the STATUS=
    line shows in `systemctl status` and StatusText."""
    i = instance
    i.gen("yellow", "2016-01-01", 20_000)
    planned = i.plan("taxi-stats", 1_000)
    config = config_yaml()
    # Each IMDS answer takes 1 s: the boot (token, then identity and user-data) is
    # seconds long, a window in which systemd must still say "activating".
    imds = i.start_imds(config, ["--latency", "1s"])
    i.install(config, imds)
    # What cloud-init-output.log would say: checked, installed, queued (--no-block).
    log = i.install_log
    assert f"installed /usr/local/bin/rangefleet (sha256 {i.server.sha256}," in log, log
    assert "installed /etc/systemd/system/rangefleet-agent.service" in log, log
    assert "enabled and queued start of rangefleet-agent.service" in log, log

    seen: list[tuple[str, str]] = []

    def running() -> bool:
        s = i.show("ActiveState", "SubState")
        state = (s["ActiveState"], s["SubState"])
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == ("active", "running")

    wait_for(f"{UNIT} to become active (running) after READY=1", running, 60,
             interval=0.1, describe=i.describe)
    assert ("activating", "start") in seen, f"activating (start) while booting: {seen}"
    assert seen.index(("activating", "start")) < seen.index(("active", "running")), seen
    assert all(s[0] in ("inactive", "activating", "active") for s in seen), seen

    props = i.show("Type", "NotifyAccess", "WatchdogUSec", "ExecMainStartTimestampMonotonic",
                   "ActiveEnterTimestampMonotonic", "NRestarts")
    assert props["Type"] == "notify" and props["NotifyAccess"] == "main", props
    assert props["WatchdogUSec"] == "1min", props
    assert props["NRestarts"] == "0", props

    # The journal's order: systemd's "Starting", the agent's boot entry (logged just
    # before READY=1), then systemd's "Started" (job done on READY=1).
    entries = i.journal("-u", "rangefleet-agent", "-b")
    boot = [e for e in entries if field(e, "MESSAGE_ID") == BOOT]
    started = [e for e in entries if field(e, "MESSAGE_ID") == SD_UNIT_STARTED
               and field(e, "_PID") == "1"]
    assert len(boot) == 1, f"one boot entry from the agent:\n{messages(entries)}"
    assert len(started) == 1, f"one 'Started' from systemd:\n{messages(entries)}"
    assert field(started[0], "JOB_RESULT") == "done", started[0]
    assert mono(boot[0]) < mono(started[0]), f"boot entry before Started:\n{messages(entries)}"
    exec_start = int(props["ExecMainStartTimestampMonotonic"])
    active_enter = int(props["ActiveEnterTimestampMonotonic"])
    assert exec_start < mono(boot[0]) <= active_enter + 1_000_000, (
        f"the agent booted between ExecStart ({exec_start}) and active ({active_enter}): "
        f"boot entry at {mono(boot[0])}")
    assert active_enter - exec_start >= 1_000_000, (
        "IMDS answers took 1 s each, so activating lasted at least a second: "
        f"{(active_enter - exec_start) / 1e6:.3f} s")
    assert i.imds.stats(), "the agent talked to imds-mock"

    # STATUS=: in StatusText and in `systemctl status`, updated as jobs are done.
    def all_done_in_status() -> tuple[str, int, int, int] | None:
        st = i.status_text()
        return st if st and st[2] == planned else None

    st = wait_for(f"StatusText to say {planned} done", all_done_in_status, 120,
                  interval=0.5, describe=i.describe)
    assert st == ("leasing", 0, planned, 0), st
    text = i.c.exec(["systemctl", "status", UNIT, "--no-pager"], check=False).stdout
    assert f'Status: "leasing; 0 running, {planned} done, 0 failed"' in text, text
    assert "Active: active (running)" in text, text
    assert_exact_taxi(i)


# ------------------------------------------------------------------------ 2. watchdog


def test_stuck_agent_is_killed_by_the_watchdog_and_restarted(instance: Instance):
    """SIGSTOP the agent: its loop makes no turn, the WATCHDOG=1 pings stop, and
    within WatchdogSec systemd declares a watchdog timeout and sends SIGABRT; the unit
    is restarted (NRestarts=1) and the jobs still end exact."""
    i = instance
    # 1,600 small jobs, so the agent is still at them when the drill stops it.
    i.gen("yellow,green", "2016-01-01..2016-01-04", 20_000)
    planned = i.plan("taxi-stats", 100)
    # A short lease: the jobs the stuck agent held come back 15 s after it dies.
    config = config_yaml(concurrency=2, lease_seconds=15)
    imds = i.start_imds(config)
    i.install(config, imds)
    first = i.wait_state("active", "running", 60)

    def working() -> tuple[str, int, int, int] | None:
        st = i.status_text()
        return st if st and st[1] >= 1 and 5 <= st[2] < planned else None

    wait_for("the agent to be mid-run (jobs running, some done)", working, 60, interval=0.1,
             describe=i.describe)
    pid = first["MainPID"]

    def stuck_holding_jobs() -> dict[str, object] | None:
        """SIGSTOP; if the agent happened to hold no lease at that instant, let it go on
        for a moment and try again, so it is stuck with jobs in flight."""
        i.c.sh(f"kill -STOP {pid}")
        queue = i.status()["queue"]
        if queue["in_flight"] >= 1:
            return queue
        i.c.sh(f"kill -CONT {pid}")
        return None

    queue = wait_for("the agent to be stopped while it holds leased jobs", stuck_holding_jobs,
                     20, interval=0.05, describe=i.describe)
    stopped_at = time.monotonic()

    def watchdog_fired() -> list[dict[str, object]]:
        return [e for e in i.journal("-u", "rangefleet-agent", "-b", "_PID=1")
                if "Watchdog timeout" in (field(e, "MESSAGE") or "")]

    # systemd's and the harness's clocks are the same CLOCK_MONOTONIC (no time
    # namespace), so the journal's timestamps measure from the SIGSTOP.
    fired = wait_for("systemd to declare a watchdog timeout", watchdog_fired,
                     WATCHDOG_SEC + 20, interval=0.5, describe=i.describe)
    fired_after = mono(fired[0]) / 1e6 - stopped_at
    assert 0 < fired_after <= WATCHDOG_SEC + 2, f"fired {fired_after:.1f} s after the SIGSTOP"
    assert field(fired[0], "MESSAGE").endswith("Watchdog timeout (limit 1min)!"), fired[0]

    # The watchdog's signal is SIGABRT, followed by SIGCONT, so the stopped agent takes
    # it at once (the agent has no handler for it). A cgroup-frozen agent could not; it
    # would be SIGKILLed after TimeoutAbortSec (default: TimeoutStopSec), hence the bound.
    def restarted() -> dict[str, str] | None:
        s = i.show("ActiveState", "SubState", "NRestarts", "MainPID", "Result")
        return s if (s["ActiveState"], s["SubState"], s["NRestarts"]) == (
            "active", "running", "1") else None

    s = wait_for("the unit to be restarted and running again", restarted,
                 TIMEOUT_STOP_SEC + RESTART_SEC + 60, interval=0.25, describe=i.describe)
    assert s["MainPID"] != pid, s
    entries = i.journal("-u", "rangefleet-agent", "-b", "_PID=1")
    text = messages(entries)
    assert f"Killing process {pid} (rangefleet) with signal SIGABRT." in text, text
    assert "Main process exited, code=killed, status=6/ABRT" in text, text
    assert "Failed with result 'watchdog'." in text, text
    assert "Scheduled restart job, restart counter is at 1." in text, text
    exited = [e for e in entries if "status=6/ABRT" in field(e, "MESSAGE")][0]
    killed_after = (mono(exited) - mono(fired[0])) / 1e6
    boots = i.journal("-u", "rangefleet-agent", "-b", f"MESSAGE_ID={BOOT}")
    assert len(boots) == 2, f"the agent booted twice:\n{messages(boots)}"
    i.wait_all_done(planned, 120)
    doc = assert_exact_taxi(i)
    assert i.show("NRestarts")["NRestarts"] == "1"
    print(f"stuck holding {queue['in_flight']} leases; watchdog fired {fired_after:.1f} s "
          f"after SIGSTOP, the agent was gone "
          f"{killed_after:.3f} s later; redone {doc['coverage']['redone']}")


# ------------------------------------------------------------------------ 4. spot notice

# An exec step that reads its records, takes 2 s and reports their byte count.
STEP_2S = 'n=$(wc -c); sleep 2; printf \'{"bytes": %s}\\n\' "$n"'


def test_spot_notice_drains_and_the_unit_ends_inactive_exit_0(instance: Instance):
    """A spot interruption notice from imds-mock while jobs run: the agent finishes the
    jobs in flight, leaves the rest on the queue and exits 0; systemd leaves the unit
    inactive (Restart=on-failure does not restart a clean exit). Nothing is lost:
    started again against an IMDS without a notice, it finishes the rest, exactly."""
    i = instance
    expected = i.gen("yellow,green", "2016-01-01", 8_000)
    planned = i.plan("exec", 1_000)
    assert planned == 16, planned
    # Each job takes 2 s, two at a time: 16 s of work; the notice comes at 8 s.
    extra = ("processors:\n  exec:\n    argv: " + json.dumps(["/bin/sh", "-c", STEP_2S]) + "\n")
    config = config_yaml(concurrency=2, extra=extra)
    imds = i.start_imds(config, ["--interrupt-after", "8s"])
    i.install(config, imds)
    i.wait_state("active", "running", 60)
    pid = i.show("MainPID")["MainPID"]
    s = i.wait_state("inactive", "dead", 60, what="the agent to drain on the notice and exit")
    assert s["Result"] == "success", s
    assert (s["ExecMainCode"], s["ExecMainStatus"]) == ("1", "0"), s
    assert s["NRestarts"] == "0", s

    entries = i.journal("-u", "rangefleet-agent", "-b", f"_PID={pid}")
    text = messages(entries)
    notices = [e for e in entries if field(e, "MESSAGE_ID") == INTERRUPTION]
    drained = [e for e in entries if field(e, "MESSAGE_ID") == DRAINED]
    assert len(notices) == 1 and len(drained) == 1, text
    assert mono(notices[0]) / 1e6 >= imds.started + 8, "the notice came when scheduled"
    assert mono(notices[0]) < mono(drained[0]), text
    after = [field(e, "EVENT") for e in entries if mono(notices[0]) < mono(e) < mono(drained[0])]
    assert "job_done" in after, f"the jobs in flight at the notice were finished:\n{text}"
    assert "job_started" not in after, f"no job was leased after the notice:\n{text}"
    summary = i.summaries()[0]
    assert summary["interruption"]["kind"] == "spot-interruption", summary

    # Not restarted: still inactive after RestartSec has passed twice over.
    time.sleep(2 * RESTART_SEC)
    s = i.show("ActiveState", "NRestarts")
    assert (s["ActiveState"], s["NRestarts"]) == ("inactive", "0"), s

    queue = i.status()["queue"]
    assert queue["dead"] == 0 and queue["in_flight"] == 0, queue
    assert queue["visible"] >= 1, f"the notice came with jobs still queued: {queue}"
    assert summary["done"] + queue["visible"] == planned, (summary, queue)
    print(f"drained with {summary['done']} done, {queue['visible']} left on the queue")

    # Nothing lost: the same instance, without a notice this time, finishes the rest.
    calm = i.start_imds(config)
    i.retarget(calm)
    i.c.exec(["systemctl", "start", UNIT], timeout=60)
    i.wait_all_done(planned, 120)
    rc, doc, stderr = i.reduce()
    assert rc == 0 and doc["coverage"]["missing"] == [], f"reduce exit {rc}:\n{stderr}"
    data_bytes = (expected["total"]["records"] + expected["total"]["bad_records"]) * 80
    assert sum_exec_bytes(doc) == data_bytes, "the exec outputs add up to the data's bytes"


# ------------------------------------------------------------------------ 5. bad config


def test_misspelt_config_key_exits_2_and_is_not_restarted(instance: Instance):
    """`concurency:` in the user-data config: the agent exits 2 naming the line and the
    field, and RestartPreventExitStatus=2 keeps systemd from restarting it."""
    i = instance
    config = config_yaml().replace("concurrency:", "concurency:")
    assert "concurency: 2" in config
    imds = i.start_imds(config)
    i.install(config, imds)
    s = i.wait_state("failed", "failed", 60, what="the unit to fail on the bad config")
    assert s["Result"] == "exit-code", s
    assert (s["ExecMainCode"], s["ExecMainStatus"]) == ("1", "2"), s
    assert s["NRestarts"] == "0", s
    time.sleep(2 * RESTART_SEC)
    s = i.show("ActiveState", "SubState", "NRestarts", "Result")
    assert (s["ActiveState"], s["NRestarts"]) == ("failed", "0"), f"not restarted: {s}"

    # The agent read its config from the file cloud-init wrote (read first, so an
    # operator's edit counts): the journal names that file's line and the field.
    userdata = (i.c.run / "user-data-0.yaml").read_text()
    line = config.splitlines().index("concurency: 2") + 1
    text = messages(i.journal("-u", "rangefleet-agent", "-b"))
    assert f"line {line}: unknown field `concurency`" in text, text
    # The failure path ran from the real units: the summary says why, and the
    # OnFailure= handler, finding no auto-scaling group here, took its fallback (the
    # power-off, which the harness turns into a mark instead of ending the container).
    failed = [s for s in i.summaries() if s.get("failure")]
    assert failed and failed[0]["failure"]["kind"] == "config", i.summaries()
    assert "concurency" in failed[0]["failure"]["reason"], failed[0]
    result = i.c.shared / "failed-handler-result"
    wait_for("the OnFailure= handler to finish",
             lambda: result.exists() or None, 60, interval=0.5, describe=i.describe)
    handler = messages(i.journal("-u", "rangefleet-agent-failed", "-b"))
    assert result.read_text().strip() == "success", handler
    assert (i.c.shared / "powered-off").exists(), handler
    line = userdata.splitlines().index("      concurency: 2") + 1
    # The operator's check says the same of the user-data, and names the line in the
    # copy cloud-init wrote to /etc/rangefleet/agent.yaml.
    i.c.write("/root/user-data", userdata)
    r = i.op("userdata", "check", "/root/user-data", check=False)
    assert r.rc == 2 and f"line {line}: unknown field `concurency`" in r.stderr, r
    r = i.op("userdata", "check", "/etc/rangefleet/agent.yaml", check=False)
    line = config.splitlines().index("concurency: 2") + 1
    assert r.rc == 2 and f"line {line}: unknown field `concurency`" in r.stderr, r
