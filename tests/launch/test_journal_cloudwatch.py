"""agent/systemd/journal-cloudwatch.py against moto's CloudWatch Logs and real journal files.

Run with the venv scripts/setup-python makes (moto[server], botocore):

    ~/.cache/rangefleet/venv/bin/python tests/launch/test_journal_cloudwatch.py

Needs systemd-journal-remote (it writes the journal files journalctl follows) and
journalctl; scripts/test-launch installs them. A missing tool fails, never skips.
Servers bind 127.0.0.1 on free ports.
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "agent" / "systemd" / "journal-cloudwatch.py"
SAMPLE = REPO / "examples" / "journal-cloudwatch.ini"
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT = "0123456789abcdef0123456789abcdef"
GROUP = "/rangefleet/test"

spec = importlib.util.spec_from_file_location("shipper", SCRIPT)
shipper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shipper)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Journal:
    """A journal directory that entries are appended to, as journald would."""

    def __init__(self, root):
        self.dir = Path(root) / "journal"
        self.dir.mkdir()
        self.seq = 0
        # CloudWatch refuses events older than 14 days: these are from a minute ago.
        self.base_us = (int(time.time()) - 60) * 1_000_000

    def append(self, entries):
        chunks = []
        for e in entries:
            self.seq += 1
            fields = {
                "__REALTIME_TIMESTAMP": str(self.base_us + self.seq * 1000),
                "__MONOTONIC_TIMESTAMP": str(self.seq),
                "_BOOT_ID": BOOT,
                "PRIORITY": "6",
                **e,
            }
            chunks.append("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n")
        export = self.dir.parent / "entries.export"
        export.write_text("".join(chunks))
        subprocess.run(
            [JOURNAL_REMOTE, f"--output={self.dir / 'remote.journal'}", str(export)],
            check=True,
            capture_output=True,
        )


def agent(message, **extra):
    return {
        "MESSAGE": message,
        "SYSLOG_IDENTIFIER": "rangefleet-agent",
        "_SYSTEMD_UNIT": "rangefleet-agent.service",
        **extra,
    }


class Moto:
    def __init__(self, root):
        venv_bin = Path(sys.executable).parent
        server = venv_bin / "moto_server"
        if not server.exists():
            raise AssertionError(f"{server} missing: run scripts/setup-python")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(root) / "moto.log", "wb")
        self.proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("moto_server did not start")
        import botocore.session

        self.client = botocore.session.get_session().create_client(
            "logs", region_name="us-east-1", endpoint_url=self.url
        )

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def events(self, stream):
        out, token = [], None
        while True:
            kw = {"nextToken": token} if token else {}
            page = self.client.get_log_events(
                logGroupName=GROUP, logStreamName=stream, startFromHead=True, **kw
            )
            out += page["events"]
            if page["nextForwardToken"] == token or not page["events"]:
                return out
            token = page["nextForwardToken"]


ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}

# The test's own client too: never the developer's account.
os.environ.update(ENV)


class ConfigTest(unittest.TestCase):
    def check(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as fh:
            fh.write(text)
        try:
            return subprocess.run(
                [sys.executable, str(SCRIPT), "--config", fh.name, "--check"],
                capture_output=True,
                text=True,
            )
        finally:
            os.unlink(fh.name)

    def test_the_sample_is_valid(self):
        out = subprocess.run(
            [sys.executable, str(SCRIPT), "--config", str(SAMPLE), "--check"],
            capture_output=True,
            text=True,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        cfg = json.loads(out.stdout)
        self.assertEqual(cfg["log_group"], "/rangefleet/trips")
        self.assertEqual(cfg["units"], ["rangefleet-agent.service", "rangefleet-agent-failed.service"])
        self.assertEqual(cfg["flush_seconds"], 5)

    def test_mistakes_are_named(self):
        cases = {
            "[cloudwatch]\nregion = us-east-1\n": "log_group is required",
            "[cloudwatch]\nlog_group = g\nlog_groop = h\n": "unknown key log_groop",
            "[cloudwatch]\nlog_group = g\n[jornal]\n": "unknown section [jornal]",
            "[cloudwatch]\nlog_group = g\n[journal]\nunits = agent\n": "not a unit name",
            "[cloudwatch]\nlog_group = g\n[batch]\nflush_seconds = 0\n": "flush_seconds 0: from 1 to 60",
            "[cloudwatch]\nlog_group = g\n[batch]\nmax_events = lots\n": "max_events 'lots'",
            "[cloudwatch]\nlog_group = a group\n": "log_group 'a group'",
            "[cloudwatch]\nlog_group = g\nlog_stream = {az}\n": "only {instance_id} and {hostname}",
        }
        for text, want in cases.items():
            out = self.check(text)
            self.assertEqual(out.returncode, 2, text)
            self.assertIn(want, out.stderr, text)


class EventTest(unittest.TestCase):
    def test_entry_becomes_one_json_message_without_address_fields(self):
        entry = {
            "__CURSOR": "s=1",
            "__REALTIME_TIMESTAMP": "1764600000123456",
            "MESSAGE": [104, 105, 255],
            "EVENT": "job_done",
            "JOB_ID": "j-1",
        }
        event, cursor = shipper.to_event(entry)
        self.assertEqual(cursor, "s=1")
        self.assertEqual(event["timestamp"], 1764600000123)
        msg = json.loads(event["message"])
        self.assertEqual(msg, {"EVENT": "job_done", "JOB_ID": "j-1", "MESSAGE": "hi\ufffd"})

    def test_a_huge_entry_is_truncated_to_the_event_limit(self):
        event, _ = shipper.to_event({"MESSAGE": "x" * 400_000, "__REALTIME_TIMESTAMP": "1"})
        self.assertLessEqual(len(event["message"].encode()), shipper.MAX_EVENT_BYTES)
        self.assertTrue(event["message"].endswith("[truncated]"))

    def test_batches_keep_to_the_byte_count_and_time_order(self):
        b = shipper.Batch(10_000)
        big = {"timestamp": 5, "message": "y" * 200_000}
        n = 0
        while b.fits(dict(big)):
            b.add(dict(big), f"c{n}")
            n += 1
        self.assertEqual(n, shipper.MAX_BATCH_BYTES // (200_000 + shipper.EVENT_OVERHEAD))
        self.assertLessEqual(b.bytes, shipper.MAX_BATCH_BYTES)
        self.assertEqual(b.cursor, f"c{n - 1}")
        b.add({"timestamp": 1, "message": "late"}, None)
        self.assertEqual(b.events[-1]["timestamp"], 5)


class ShipTest(unittest.TestCase):
    def setUp(self):
        for tool in ("journalctl",):
            self.assertIsNotNone(shutil.which(tool), f"{tool} is not installed")
        self.assertTrue(
            os.access(JOURNAL_REMOTE, os.X_OK),
            f"{JOURNAL_REMOTE} missing: apt-get install systemd-journal-remote",
        )
        self.root = tempfile.mkdtemp(prefix="rangefleet-jcw-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.moto = Moto(self.root)
        # Cleanups run even when setUp fails after this point (tearDown would not).
        self.addCleanup(self.moto.stop)
        self.moto.client.create_log_group(logGroupName=GROUP)
        self.journal = Journal(self.root)
        self.cursor = Path(self.root) / "state" / "cursor"
        self.config = Path(self.root) / "shipper.ini"
        self.config.write_text(
            "[cloudwatch]\n"
            f"log_group = {GROUP}\n"
            "log_stream = worker-{hostname}\n"
            "region = us-east-1\n"
            f"endpoint_url = {self.moto.url}\n"
            "[journal]\n"
            f"directory = {self.journal.dir}\n"
            f"cursor_file = {self.cursor}\n"
            "[batch]\n"
            "flush_seconds = 1\n"
            "max_events = 10\n"
        )
        self.stream = f"worker-{socket.gethostname()}"
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def start(self):
        log = open(Path(self.root) / f"shipper-{len(self.procs)}.log", "wb")
        p = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--config", str(self.config)],
            stderr=log,
            env={**os.environ, **ENV},
        )
        log.close()  # the child has its own copy
        p.log_path = log.name
        self.procs.append(p)
        return p

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=20), 0, Path(p.log_path).read_text())
        return Path(p.log_path).read_text()

    def wait_for(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        events = []
        while time.monotonic() < deadline:
            try:
                events = self.moto.events(self.stream)
            except self.moto.client.exceptions.ResourceNotFoundException:
                events = []
            if len(events) >= n:
                return events
            time.sleep(0.2)
        logs = "".join(Path(p.log_path).read_text() for p in self.procs)
        self.fail(f"{len(events)} events in CloudWatch, want {n}:\n{logs}")

    def test_ships_follows_batches_resumes_without_duplicates(self):
        self.journal.append([agent(f"boot line {i}", EVENT="boot") for i in range(3)])
        # Another unit's entries stay on the instance.
        self.journal.append([{"MESSAGE": "sshd noise", "_SYSTEMD_UNIT": "sshd.service"}])
        p = self.start()
        events = self.wait_for(3)
        first = json.loads(events[0]["message"])
        self.assertEqual(first["MESSAGE"], "boot line 0")
        self.assertEqual(first["EVENT"], "boot")
        self.assertEqual(first["_SYSTEMD_UNIT"], "rangefleet-agent.service")
        self.assertNotIn("__CURSOR", first)
        self.assertEqual(events[0]["timestamp"], self.journal.base_us // 1000 + 1)

        # Followed: 25 more while it runs, in batches of at most 10.
        self.journal.append([agent(f"job {i}", EVENT="job_done", JOB_ID=f"j-{i}") for i in range(25)])
        self.journal.append([agent("gave up", _SYSTEMD_UNIT="rangefleet-agent-failed.service")])
        events = self.wait_for(29)
        log = self.stop(p)
        sizes = [json.loads(line.split("events=")[1].split()[0]) for line in log.splitlines() if "event=batch_sent" in line]
        self.assertTrue(sizes and max(sizes) <= 10, log)
        self.assertEqual(sum(sizes), 29, log)
        messages = [json.loads(e["message"])["MESSAGE"] for e in events]
        self.assertEqual(messages[3:5], ["job 0", "job 1"])
        self.assertEqual(messages[-1], "gave up")
        self.assertNotIn("sshd noise", messages)
        self.assertTrue(self.cursor.read_text().startswith("s="))

        # A restart resumes after the saved cursor: no entry twice, the new one once.
        p = self.start()
        self.journal.append([agent("after restart")])
        events = self.wait_for(30)
        time.sleep(2)
        events = self.moto.events(self.stream)
        self.stop(p)
        messages = [json.loads(e["message"])["MESSAGE"] for e in events]
        self.assertEqual(len(messages), 30, messages)
        self.assertEqual(messages[-1], "after restart")

    def test_holds_the_batch_while_cloudwatch_is_unreachable(self):
        # The endpoint is down when the shipper starts: it keeps retrying, sends
        # nothing twice, and gets everything through once the endpoint is back.
        self.journal.append([agent(f"line {i}") for i in range(4)])
        down = self.config.read_text().replace(self.moto.url, f"http://127.0.0.1:{free_port()}")
        self.config.write_text(down)
        p = self.start()
        time.sleep(3)
        self.assertIsNone(p.poll(), "the shipper gave up")
        self.stop(p)
        self.assertFalse(self.cursor.exists(), "a cursor saved for entries not sent")
        self.config.write_text(down.replace(down.split("endpoint_url = ")[1].split("\n")[0], self.moto.url))
        p = self.start()
        events = self.wait_for(4)
        self.stop(p)
        self.assertEqual([json.loads(e["message"])["MESSAGE"] for e in events], [f"line {i}" for i in range(4)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
