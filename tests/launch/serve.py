"""A tiny file server for scripts/test-launch: serves one directory on
127.0.0.1 (port 0 unless given), answers the first --fail-first GET requests
with 500, and prints its base URL as the first stdout line."""

import argparse
import functools
import http.server
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()

    lock = threading.Lock()
    remaining = [args.fail_first]

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            with lock:
                fail = remaining[0] > 0
                if fail:
                    remaining[0] -= 1
            if fail:
                self.send_error(500, "injected failure")
                return
            super().do_GET()

        def log_message(self, fmt, *a):
            sys.stderr.write("serve: " + (fmt % a) + "\n")

    handler = functools.partial(Handler, directory=args.dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
