"""Jobs completed over time per agent, interruptions marked, from the agents' JSON logs.

    python bench/soak_chart.py LOGS_DIR OUT.png

LOGS_DIR holds one `<instance-id>.log` per agent (`rangefleet agent --log-format json`
stderr). Each "job done" event is one completion; a "spot interruption notice:
draining" event is marked with a cross on that agent's line, and the agent's last
event ends its line (a drained instance stops there; its replacement starts a new one).
"""

import datetime
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def ts(ev):
    t = ev["timestamp"].rstrip("Z")
    t = t[:26]  # microseconds at most
    return datetime.datetime.fromisoformat(t).replace(tzinfo=datetime.timezone.utc).timestamp()


def read(path):
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def main(logs, out):
    runs = {}
    for path in sorted(glob.glob(os.path.join(logs, "*.log"))):
        events = [e for e in read(path) if "timestamp" in e]
        if events:
            runs[os.path.basename(path)[:-4]] = events
    if not runs:
        sys.exit(f"no agent logs in {logs}")
    t0 = min(ts(e) for events in runs.values() for e in events)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for iid, events in runs.items():
        done = [ts(e) - t0 for e in events if e.get("fields", {}).get("message") == "job done"]
        start = ts(events[0]) - t0
        xs = [start] + done
        ys = list(range(len(xs)))
        (line,) = ax.step(xs, ys, where="post", label=f"{iid} ({len(done)} jobs)")
        for e in events:
            if e.get("fields", {}).get("message") == "spot interruption notice: draining":
                x = ts(e) - t0
                y = sum(1 for d in done if d <= x)
                ax.plot([x], [y], marker="X", markersize=12, color=line.get_color(),
                        markeredgecolor="black")
                ax.annotate("spot notice", (x, y), textcoords="offset points", xytext=(6, 6),
                            fontsize=8)
    ax.set_xlabel("seconds since the first agent started")
    ax.set_ylabel("jobs completed by the agent")
    total = sum(1 for ev in runs.values() for e in ev
                if e.get("fields", {}).get("message") == "job done")
    ax.set_title(f"rangefleet soak: {total} jobs, {len(runs)} agent runs (X = spot interruption notice)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
