#!/usr/bin/env python3
"""rangefleet-journal-cloudwatch: ship the agent's journal entries to CloudWatch Logs.

    rangefleet-journal-cloudwatch --config /etc/rangefleet/journal-cloudwatch.ini
    rangefleet-journal-cloudwatch --config FILE --check    # validate, print, exit

Why a script of our own: no packaged shipper reads the journal and writes CloudWatch
Logs on both the fleet's AMI (Amazon Linux 2023) and the Debian machine the tests run
on. fluent-bit and vector are in neither distribution's archive; systemd-journal-upload
only speaks to systemd-journal-remote; the CloudWatch agent reads files, not the
journal, and is not in Debian, so nothing here could test its configuration. This is
Python's standard library plus botocore (python3-botocore on the instance), the same
SDK the AWS CLI uses for signing, retries and credentials (the instance role, through
IMDSv2), and it is tested against moto's CloudWatch Logs
(tests/launch/test_journal_cloudwatch.py). The rangefleet binary carries it
(`rangefleet journal-shipper install`), so it costs user-data nothing.

What it does: runs `journalctl -o json --follow` for the configured units (from just
after the saved cursor, else the whole current boot), batches the entries into
PutLogEvents calls (at most 10,000 events or 1 MiB, or whatever has come in
flush_seconds after a batch's first entry), and after each accepted batch saves the
last entry's cursor to cursor_file. A restart resumes after that cursor: at least
once, never a gap. A call that fails is retried with backoff (botocore's standard
retries, then ours) holding the batch, so a CloudWatch outage delays entries rather
than dropping them. Each event's message is the entry as one JSON object (MESSAGE,
PRIORITY, SYSLOG_IDENTIFIER, _SYSTEMD_UNIT and the agent's own fields such as EVENT
and JOB_ID; journald's __-prefixed address fields are left out), and its timestamp is
the entry's __REALTIME_TIMESTAMP. The log stream (one per instance) is created when
missing; the log group is not (Terraform makes it, with its retention), and the role
may only CreateLogStream and PutLogEvents on it. SIGTERM flushes and exits 0.

Config (INI; docs/operations.md "Shipping the journal to CloudWatch Logs"):

    [cloudwatch]
    log_group = /rangefleet/trips          # required
    log_stream = {instance_id}             # {instance_id} {hostname}; default {instance_id}
    region = us-east-1                     # default: AWS_REGION, else botocore's chain
    endpoint_url =                         # default: CloudWatch Logs' regional endpoint
    [journal]
    units = rangefleet-agent.service rangefleet-agent-failed.service
    cursor_file = /var/lib/rangefleet-journal-cloudwatch/cursor
    directory =                            # a journal directory instead of the system's
    [batch]
    flush_seconds = 5                      # 1 to 60
    max_events = 10000                     # 1 to 10000
"""

import argparse
import configparser
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

# PutLogEvents limits: bytes per batch (UTF-8 message bytes plus 26 per event),
# events per batch, bytes per event.
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENTS = 10_000
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD
# A batch may span at most 24 hours.
MAX_SPAN_MS = 24 * 3600 * 1000
INSTANCE_ID_FILE = "/var/lib/cloud/data/instance-id"
DEFAULT_UNITS = "rangefleet-agent.service rangefleet-agent-failed.service"
DEFAULT_CURSOR = "/var/lib/rangefleet-journal-cloudwatch/cursor"
LOG_GROUP_RE = re.compile(r"^[A-Za-z0-9_\-/.#]{1,512}$")
UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|scope|slice|mount)$")


class ConfigError(Exception):
    """A mistake in the config file; the message names the key."""


def say(event, **fields):
    """One line on stderr (the journal, under systemd) with an event field."""
    parts = [f"event={event}"] + [f"{k}={json.dumps(v)}" for k, v in fields.items()]
    print(" ".join(parts), file=sys.stderr, flush=True)


def instance_id():
    try:
        with open(INSTANCE_ID_FILE, encoding="ascii") as fh:
            return fh.read().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


def load_config(path):
    """The settings of the INI file at `path`, checked; raises ConfigError."""
    cp = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    try:
        with open(path, encoding="utf-8") as fh:
            cp.read_file(fh)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except configparser.Error as e:
        raise ConfigError(f"{path}: {e}") from e
    known = {
        "cloudwatch": {"log_group", "log_stream", "region", "endpoint_url"},
        "journal": {"units", "cursor_file", "directory"},
        "batch": {"flush_seconds", "max_events"},
    }
    for section in cp.sections():
        if section not in known:
            raise ConfigError(f"unknown section [{section}] (known: {', '.join(known)})")
        for key in cp[section]:
            if key not in known[section]:
                raise ConfigError(f"unknown key {key} in [{section}]")
    get = lambda s, k, d="": cp.get(s, k, fallback=d).strip()  # noqa: E731
    group = get("cloudwatch", "log_group")
    if not group:
        raise ConfigError("[cloudwatch] log_group is required")
    if not LOG_GROUP_RE.match(group):
        raise ConfigError(f"[cloudwatch] log_group {group!r}: 1 to 512 of A-Z a-z 0-9 _ - / . #")
    stream = get("cloudwatch", "log_stream", "{instance_id}")
    try:
        stream = stream.format(instance_id=instance_id(), hostname=socket.gethostname())
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"[cloudwatch] log_stream {stream!r}: only {{instance_id}} and {{hostname}}") from e
    if not stream or len(stream) > 512 or ":" in stream or "*" in stream:
        raise ConfigError(f"[cloudwatch] log_stream {stream!r}: 1 to 512 characters, no : or *")
    units = get("journal", "units", DEFAULT_UNITS).split()
    if not units:
        raise ConfigError("[journal] units: name at least one unit")
    for u in units:
        if not UNIT_RE.match(u):
            raise ConfigError(f"[journal] units: {u!r} is not a unit name (name.service …)")

    def number(section, key, default, lo, hi):
        raw = get(section, key, str(default))
        try:
            n = int(raw)
        except ValueError:
            raise ConfigError(f"[{section}] {key} {raw!r}: a whole number from {lo} to {hi}") from None
        if not lo <= n <= hi:
            raise ConfigError(f"[{section}] {key} {n}: from {lo} to {hi}")
        return n

    return {
        "log_group": group,
        "log_stream": stream,
        "region": get("cloudwatch", "region") or os.environ.get("AWS_REGION") or None,
        "endpoint_url": get("cloudwatch", "endpoint_url") or None,
        "units": units,
        "cursor_file": get("journal", "cursor_file", DEFAULT_CURSOR),
        "directory": get("journal", "directory") or None,
        "flush_seconds": number("batch", "flush_seconds", 5, 1, 60),
        "max_events": number("batch", "max_events", MAX_EVENTS, 1, MAX_EVENTS),
    }


def journal_argv(cfg, cursor):
    argv = ["journalctl", "-o", "json", "--follow", "--no-pager"]
    if cfg["directory"]:
        argv.append(f"--directory={cfg['directory']}")
    argv += ["--after-cursor", cursor] if cursor else ["--boot", "--lines=all"]
    for u in cfg["units"]:
        argv += ["--unit", u]
    return argv


def to_event(entry):
    """A journal entry (journalctl's JSON) as a PutLogEvents event, and its cursor."""
    fields = {}
    for k, v in entry.items():
        if k.startswith("__"):
            continue
        # journalctl writes a value that is not UTF-8 text as an array of bytes.
        if isinstance(v, list) and all(isinstance(b, int) for b in v):
            v = bytes(v).decode("utf-8", "replace")
        fields[k] = v
    message = json.dumps(fields, ensure_ascii=False, sort_keys=True)
    raw = message.encode("utf-8")
    if len(raw) > MAX_EVENT_BYTES:
        message = raw[: MAX_EVENT_BYTES - 16].decode("utf-8", "ignore") + " …[truncated]"
    try:
        ts = int(entry["__REALTIME_TIMESTAMP"]) // 1000
    except (KeyError, ValueError):
        ts = int(time.time() * 1000)
    return {"timestamp": ts, "message": message}, entry.get("__CURSOR")


class Batch:
    """Events for one PutLogEvents call, within its limits."""

    def __init__(self, max_events):
        self.max_events = max_events
        self.events = []
        self.bytes = 0
        self.cursor = None
        self.started = None

    def fits(self, event):
        size = len(event["message"].encode("utf-8")) + EVENT_OVERHEAD
        if not self.events:
            return True
        span = max(event["timestamp"], self.events[-1]["timestamp"]) - self.events[0]["timestamp"]
        return (
            len(self.events) < self.max_events
            and self.bytes + size <= MAX_BATCH_BYTES
            and span <= MAX_SPAN_MS
        )

    def add(self, event, cursor):
        if not self.events:
            self.started = time.monotonic()
        # CloudWatch wants events in time order within a call.
        if self.events and event["timestamp"] < self.events[-1]["timestamp"]:
            event["timestamp"] = self.events[-1]["timestamp"]
        self.events.append(event)
        self.bytes += len(event["message"].encode("utf-8")) + EVENT_OVERHEAD
        if cursor:
            self.cursor = cursor


class Shipper:
    def __init__(self, cfg, client):
        self.cfg = cfg
        self.client = client
        self.stop = threading.Event()

    def read_cursor(self):
        try:
            with open(self.cfg["cursor_file"], encoding="ascii") as fh:
                return fh.read().strip() or None
        except FileNotFoundError:
            return None

    def save_cursor(self, cursor):
        path = self.cfg["cursor_file"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(cursor + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def ensure_stream(self):
        try:
            self.client.create_log_stream(
                logGroupName=self.cfg["log_group"], logStreamName=self.cfg["log_stream"]
            )
            say("stream_created", log_group=self.cfg["log_group"], log_stream=self.cfg["log_stream"])
        except self.client.exceptions.ResourceAlreadyExistsException:
            pass

    def put(self, batch):
        """Sends `batch` until CloudWatch takes it (or we are told to stop twice)."""
        delay = 1.0
        tries_after_stop = 0
        while True:
            try:
                out = self.client.put_log_events(
                    logGroupName=self.cfg["log_group"],
                    logStreamName=self.cfg["log_stream"],
                    logEvents=batch.events,
                )
                rejected = out.get("rejectedLogEventsInfo")
                if rejected:
                    say("events_rejected", **rejected)
                if batch.cursor:
                    self.save_cursor(batch.cursor)
                say("batch_sent", events=len(batch.events), bytes=batch.bytes)
                return
            except self.client.exceptions.ResourceNotFoundException:
                # The stream was deleted (or never made): make it, try again.
                self.ensure_stream()
            except Exception as e:  # noqa: BLE001 — keep the batch, retry
                # Stopping: three more tries, then the cursor stays where it is and
                # the next start sends these entries again.
                if self.stop.is_set():
                    tries_after_stop += 1
                    if tries_after_stop > 3:
                        say("gave_up_on_batch", events=len(batch.events), error=str(e))
                        return
                say("put_failed", error=str(e), retry_in_seconds=delay)
                if self.stop.is_set():
                    time.sleep(1.0)
                else:
                    self.stop.wait(delay)  # a SIGTERM cuts the wait short
                delay = min(delay * 2, 60.0)

    def run(self):
        try:
            self.ensure_stream()
        except Exception as e:  # noqa: BLE001 — put() makes the stream when it can
            say("stream_check_failed", error=str(e))
        argv = journal_argv(self.cfg, self.read_cursor())
        say("started", argv=argv)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        lines = queue.Queue(maxsize=MAX_EVENTS)

        def reader():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        batch = Batch(self.cfg["max_events"])
        ended = False
        while not ended and not self.stop.is_set():
            timeout = 0.2
            if batch.events:
                timeout = max(0.0, min(timeout, batch.started + self.cfg["flush_seconds"] - time.monotonic()))
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                line = b""
            if line is None:
                ended = True
            elif line:
                try:
                    event, cursor = to_event(json.loads(line))
                except ValueError:
                    say("bad_line", line=line[:200].decode("utf-8", "replace"))
                    continue
                if not batch.fits(event):
                    self.put(batch)
                    batch = Batch(self.cfg["max_events"])
                batch.add(event, cursor)
            if batch.events and (
                ended
                or self.stop.is_set()
                or time.monotonic() - batch.started >= self.cfg["flush_seconds"]
            ):
                self.put(batch)
                batch = Batch(self.cfg["max_events"])
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        if ended and proc.returncode not in (0, -signal.SIGTERM):
            say("journalctl_failed", status=proc.returncode)
            return 1
        say("stopped")
        return 0


def client_for(cfg):
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    conf = botocore.config.Config(retries={"mode": "standard", "max_attempts": 3})
    return session.create_client(
        "logs", region_name=cfg["region"], endpoint_url=cfg["endpoint_url"], config=conf
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description="Ship journal entries to CloudWatch Logs.")
    ap.add_argument("--config", default="/etc/rangefleet/journal-cloudwatch.ini")
    ap.add_argument("--check", action="store_true", help="validate the config, print it, exit")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps(cfg, indent=2))
        return 0
    shipper = Shipper(cfg, client_for(cfg))
    signal.signal(signal.SIGTERM, lambda *_: shipper.stop.set())
    signal.signal(signal.SIGINT, lambda *_: shipper.stop.set())
    return shipper.run()


if __name__ == "__main__":
    sys.exit(main())
