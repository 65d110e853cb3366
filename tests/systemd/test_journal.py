"""Drill 6: every journalctl recipe in docs/operations.md, run as written inside the
container, finds what the page says it finds.

One scene for all of them (module-scoped): the documented job
`color=yellow/date=2016-01-01/part-0000.rec#0+100000` done, a job in the same partition
dead-lettered (its object changed after the plan), then a spot notice that drains the
agent. The recipes are read from the page itself, so a recipe added there without an
expectation here fails `test_every_recipe_has_an_expectation`.
"""

from __future__ import annotations

import json
import re

import pytest

from harness import install as inst
from harness.checks import shared_instance
from harness.fleet import (
    BOOT,
    DRAINED,
    INTERRUPTION,
    JOB_FAILED,
    UNIT,
    Instance,
    config_yaml,
    field,
)
from harness.wait import wait_for

pytestmark = pytest.mark.drill

OPERATIONS = inst.REPO / "docs/operations.md"
JOB = "color=yellow/date=2016-01-01/part-0000.rec#0+100000"
PARTITION = "color=yellow/date=2016-01-01"
AGENT_IDS = [BOOT, JOB_FAILED, INTERRUPTION, DRAINED]


def recipes() -> list[str]:
    """The journalctl commands of docs/operations.md: the "Recipes:" block and the
    "Where to look" table, as written (trailing `# comments` removed)."""
    text = OPERATIONS.read_text()
    found: list[str] = []
    block = re.search(r"^Recipes:\n\n```\n(.*?)\n```", text, re.S | re.M)
    assert block, f"{OPERATIONS} has a Recipes: block"
    for line in block.group(1).splitlines():
        line = re.sub(r"\s{2,}#.*$", "", line).strip()
        if line:
            found.append(line)
    for cmd in re.findall(r"`(journalctl [^`]+)`", text):
        if cmd not in found:
            found.append(cmd)
    assert found, f"no journalctl recipes found in {OPERATIONS}"
    return found


class Scene:
    def __init__(self, i: Instance, agent_pid: str, status_while_running: str):
        self.i = i
        self.c = i.c
        self.agent_pid = agent_pid
        self.status_while_running = status_while_running

    def run(self, command: str) -> str:
        r = self.c.exec(["/bin/sh", "-c", command], timeout=30, check=False)
        assert r.rc == 0, f"the recipe ran:\n{r!r}"
        return r.stdout

    def run_json(self, command: str) -> list[dict[str, object]]:
        """The recipe as written with `-o json` added, to read the entries' fields."""
        out = self.run(command + " -o json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def scene(root, rangefleet_bin, binary_server, request):
    with shared_instance("journal", root.path, rangefleet_bin, binary_server,
                         request.session) as i:
        c = i.c
        i.gen("yellow", "2016-01-01", 100_000)
        # A second object in the documented partition, rewritten after the plan: its
        # job is dead-lettered ("changed since the plan") with the partition's fields.
        part = c.shared / "data" / PARTITION / "part-0000.rec"
        other = part.with_name("part-0001.rec")
        other.write_bytes(part.read_bytes()[: 80 * 1000])
        planned = i.plan("taxi-stats", 100_000)
        assert planned == 2, planned
        with open(other, "ab") as f:
            f.write(part.read_bytes()[:80])
        config = config_yaml()
        imds = i.start_imds(config, ["--interrupt-after", "20s"])
        i.install(config, imds)
        i.wait_state("active", "running", 60)
        pid = i.show("MainPID")["MainPID"]

        def both_ended() -> str | None:
            st = i.status_text()
            if st and st[2] == 1 and st[3] == 1:
                return c.exec(["systemctl", "status", UNIT, "--no-pager"], check=False).stdout
            return None

        status = wait_for("one job done and one dead-lettered (StatusText)", both_ended, 60,
                          interval=0.5, describe=i.describe)
        i.wait_state("inactive", "dead", 60, what="the agent to drain on the spot notice")
        yield Scene(i, pid, status)


def events_of(entries: list[dict[str, object]]) -> list[str]:
    """The stable EVENT names of `entries` (tests key on these, never on MESSAGE)."""
    return [str(field(e, "EVENT")) for e in entries if field(e, "EVENT")]


def _expect_dead_letters(s: Scene, recipe: str) -> None:
    s.run(recipe)
    entries = s.run_json(recipe)
    assert events_of(entries) == ["job_dead_lettered"], entries
    assert len(entries) == 1, entries
    e = entries[0]
    assert field(e, "MESSAGE_ID") == JOB_FAILED
    assert "changed since" in (field(e, "REASON") or ""), e
    assert field(e, "PARTITION") == PARTITION, e


def _expect_notices(s: Scene, recipe: str) -> None:
    s.run(recipe)
    entries = s.run_json(recipe)
    assert events_of(entries) == ["spot_interruption"], entries
    assert len(entries) == 1, entries
    assert field(entries[0], "MESSAGE_ID") == INTERRUPTION, entries[0]


def _expect_job(s: Scene, recipe: str) -> None:
    s.run(recipe)
    entries = s.run_json(recipe)
    assert {"job_started", "job_done"} <= set(events_of(entries)), entries
    assert {field(e, "JOB_ID") for e in entries} == {JOB}, entries
    assert all(field(e, "PARTITION") == PARTITION for e in entries), entries
    assert all(field(e, "INSTANCE_ID") == s.i.imds.instance_id for e in entries), entries


def _expect_partition_warnings(s: Scene, recipe: str) -> None:
    s.run(recipe)
    entries = s.run_json(recipe)
    assert "job_dead_lettered" in events_of(entries), entries
    for e in entries:
        assert field(e, "PARTITION") == PARTITION, e
        assert int(field(e, "PRIORITY")) <= 4, e
    assert "job_done" not in events_of(entries), "info lines are not warnings"


def _expect_message_id_tsv(s: Scene, recipe: str) -> None:
    out = s.run(recipe)
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows and all(len(r) == 2 and r[0].isdigit() for r in rows), out
    # One row per entry with a MESSAGE_ID: as many as the journal holds.
    with_id = [e for e in s.run_json("journalctl -u rangefleet-agent")
               if field(e, "MESSAGE_ID") in AGENT_IDS]
    assert len(rows) >= len(with_id) > 0, (out, len(with_id))


def _expect_boot_story(s: Scene, recipe: str) -> None:
    s.run(recipe)
    seen = set(events_of(s.run_json(recipe)))
    for event in ("agent_ready", "job_started", "job_done", "job_dead_lettered",
                  "spot_interruption", "agent_stopped"):
        assert event in seen, f"{event!r} in `{recipe}`: {sorted(seen)}"


def _expect_json(s: Scene, recipe: str) -> None:
    out = s.run(recipe)
    entries = [json.loads(line) for line in out.splitlines()]
    ours = [e for e in entries if field(e, "_PID") == s.agent_pid]
    assert ours, out[:2000]
    ids = {field(e, "MESSAGE_ID") for e in ours}
    assert set(AGENT_IDS) <= ids, ids


def _expect_identifier_warnings(s: Scene, recipe: str) -> None:
    s.run(recipe)
    entries = s.run_json(recipe)
    assert "job_dead_lettered" in events_of(entries), entries
    for e in entries:
        assert field(e, "SYSLOG_IDENTIFIER") == "rangefleet-agent", e
        assert int(field(e, "PRIORITY")) <= 4, e


def _expect_event(s: Scene, recipe: str) -> None:
    entries = s.run_json(recipe)
    assert entries, f"`{recipe}` found nothing"
    assert all(field(e, "EVENT") == "job_dead_lettered" for e in entries), entries
    assert all(field(e, "MESSAGE_ID") == JOB_FAILED for e in entries), entries


def _expect_progress(s: Scene, recipe: str) -> None:
    entries = s.run_json(recipe)
    assert entries and all(field(e, "EVENT") == "progress" for e in entries), entries
    last = entries[-1]
    assert field(last, "LAST") == "true", last
    assert (field(last, "DONE"), field(last, "FAILED")) == ("1", "1"), last
    assert int(field(last, "PRIORITY")) == 6, last


def _expect_explained(s: Scene, recipe: str) -> None:
    out = s.run(f"{recipe} -u rangefleet-agent -b")
    assert "Defined-By: rangefleet" in out, f"no catalog text in `{recipe}`:\n{out[:3000]}"


def _expect_catalog_rebuilt(s: Scene, recipe: str) -> None:
    s.run(recipe)  # fails the drill on a non-zero exit
    out = s.run(f"journalctl --list-catalog {JOB_FAILED}")
    assert "rangefleet" in out, out


# Each documented recipe and what it must find. Keyed by a piece of the recipe.
EXPECTATIONS = [
    ("journalctl -t rangefleet-agent -p warning", _expect_identifier_warnings),
    ("EVENT=job_dead_lettered", _expect_event),
    ("EVENT=progress", _expect_progress),
    ("journalctl --update-catalog", _expect_catalog_rebuilt),
    (f"MESSAGE_ID={JOB_FAILED}", _expect_dead_letters),
    (f"MESSAGE_ID={INTERRUPTION}", _expect_notices),
    (f"JOB_ID='{JOB}'", _expect_job),
    (f"PARTITION={PARTITION} -p warning", _expect_partition_warnings),
    ("-o json | jq", _expect_message_id_tsv),
    ("journalctl -u rangefleet-agent -b", _expect_boot_story),
    ("journalctl -u rangefleet-agent -o json", _expect_json),
    ("journalctl -x", _expect_explained),
]
# The failed-agent runbook's recipe: here the agent worked, so it shows the agent's story.
EXPECTATIONS.insert(0, ("-u rangefleet-agent-failed -b", _expect_boot_story))


def expectation(recipe: str):
    """The check for a recipe: the first key it contains (the table's plain forms come
    last, so `-o json | jq` wins over `-o json` and `-b`)."""
    for key, check in EXPECTATIONS:
        if key in recipe:
            return check
    return None


def test_every_recipe_has_an_expectation():
    missing = [r for r in recipes() if expectation(r) is None]
    assert not missing, f"recipes in {OPERATIONS} the drill does not check: {missing}"


@pytest.mark.parametrize("recipe", recipes(), ids=recipes())
def test_recipe_as_written(scene: Scene, recipe: str):
    check = expectation(recipe)
    assert check is not None, recipe
    check(scene, recipe)


def test_status_line_in_systemctl_status(scene: Scene):
    """docs: `systemctl status rangefleet-agent` shows the STATUS line of the loop."""
    assert 'Status: "leasing; 0 running, 1 done, 1 failed"' in scene.status_while_running, \
        scene.status_while_running


def test_job_entries_carry_the_job_fields(scene: Scene):
    """docs: JOB_ID, PARTITION, SOURCE and ATTEMPT on every entry about a job."""
    entries = scene.c.journal("-u", "rangefleet-agent", f"_PID={scene.agent_pid}")
    about_jobs = [e for e in entries if field(e, "JOB_ID")]
    assert len(about_jobs) >= 3, entries
    for e in about_jobs:
        for name in ("PARTITION", "SOURCE", "ATTEMPT"):
            assert field(e, name), (name, e)


def test_every_entry_carries_instance_id(scene: Scene):
    """docs: `INSTANCE_ID` on every entry from `config_loaded` on."""
    entries = scene.c.journal("-u", "rangefleet-agent", f"_PID={scene.agent_pid}")
    native = [e for e in entries if field(e, "CODE_FILE")]
    loaded = [i for i, e in enumerate(native) if field(e, "EVENT") == "config_loaded"]
    assert loaded, f"no config_loaded entry: {native}"
    native = native[loaded[0]:]
    assert native, entries
    missing = [field(e, "MESSAGE") for e in native
               if field(e, "INSTANCE_ID") != scene.i.imds.instance_id]
    assert not missing, f"native entries without INSTANCE_ID: {missing}"


def test_drain_reads_as_documented(scene: Scene):
    """docs/operations.md, "How a drain looks": the notice (warning, MESSAGE_ID 8f3c…,
    seconds_left), then "agent stopped" (MESSAGE_ID 9a1b…, done=)."""
    entries = scene.c.journal("-u", "rangefleet-agent", f"_PID={scene.agent_pid}")
    notice = [e for e in entries if field(e, "MESSAGE_ID") == INTERRUPTION]
    stopped = [e for e in entries if field(e, "MESSAGE_ID") == DRAINED]
    assert len(notice) == 1 and len(stopped) == 1, entries
    n, d = notice[0], stopped[0]
    assert field(n, "EVENT") == "spot_interruption", n
    assert field(n, "PRIORITY") == "4", n
    assert 0 < int(field(n, "SECONDS_LEFT")) <= 120, n
    assert field(d, "EVENT") == "agent_stopped" and field(d, "DONE") == "1", d
    assert int(field(n, "__MONOTONIC_TIMESTAMP")) < int(field(d, "__MONOTONIC_TIMESTAMP"))


def test_interruption_entry_names_the_action(scene: Scene):
    notice = scene.c.journal("-u", "rangefleet-agent", f"MESSAGE_ID={INTERRUPTION}")
    assert len(notice) == 1, notice
    assert field(notice[0], "ACTION") == "terminate", notice[0]


def test_by_priority(scene: Scene):
    """Routine lines are info (6), not notice: `-p notice` shows only what needs a look."""
    notice = set(events_of(scene.run_json(
        f"journalctl -u rangefleet-agent -p notice _PID={scene.agent_pid}")))
    assert {"job_dead_lettered", "spot_interruption"} <= notice, notice
    assert not notice & {"job_done", "agent_ready"}, notice
    entries = scene.c.journal("-u", "rangefleet-agent", f"_PID={scene.agent_pid}")
    by_event = {field(e, "EVENT"): int(field(e, "PRIORITY")) for e in entries}
    assert by_event["progress"] == 6 and by_event["agent_ready"] == 6, by_event
    # Each job's routine lines are debug (on here through agent.env, as documented).
    assert by_event["job_done"] == 7 and by_event["job_started"] == 7, by_event
    assert by_event["job_dead_lettered"] == 4, by_event


def test_by_identifier(scene: Scene):
    """The unit's SyslogIdentifier= names the agent: `journalctl -t rangefleet-agent`
    finds the agent's events, boot to drain."""
    seen = set(events_of(scene.run_json("journalctl -t rangefleet-agent -b")))
    for event in ("agent_ready", "job_done", "job_dead_lettered", "agent_stopped"):
        assert event in seen, f"{event!r} under -t rangefleet-agent: {sorted(seen)}"


def test_catalog_text_with_journalctl_x(scene: Scene):
    """`journalctl -x` explains the agent's MESSAGE_IDs from a journal catalog."""
    for mid in AGENT_IDS:
        out = scene.run(f"journalctl -x -u rangefleet-agent MESSAGE_ID={mid}")
        assert "Subject:" in out, f"catalog text for MESSAGE_ID={mid}:\n{out}"
