"""Test doubles on the host's loopback: `rangefleet imds-mock`, and a file server for
the binary that cloud-init/install-agent.sh downloads. The container shares the host's
network namespace, so both are reached at 127.0.0.1 from inside."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import select
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


class ImdsMock:
    """`rangefleet imds-mock` on 127.0.0.1 and a free port, serving `userdata`.

    `extra` adds imds-mock options (e.g. ["--interrupt-after", "20s"]); notices are
    scheduled from the mock's start.
    """

    def __init__(self, binary: Path, userdata: Path, log: Path, extra: list[str] = (),
                 instance_id: str = "i-0123456789abcdef0"):
        self.instance_id = instance_id
        argv = [str(binary), "imds-mock", "--listen", "127.0.0.1:0", "--userdata",
                str(userdata), "--instance-id", instance_id, *extra]
        self._log = open(log, "wb")
        # No AWS_* from the caller's environment reaches the mock.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "info"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._log, env=env)
        self.started = time.monotonic()
        self.url = self._first_line(timeout=15)

    def _first_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise AssertionError(f"imds-mock printed no URL within {timeout:.0f} s")
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"imds-mock's first line is not its URL: {line!r}")
        return line

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.url + "/_mock/stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class BinaryServer:
    """Serves one file at /rangefleet over HTTP on 127.0.0.1 (what the install script's
    --url points at), from a thread of this process."""

    def __init__(self, binary: Path):
        self.binary = binary
        data = binary.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/rangefleet":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rangefleet"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
