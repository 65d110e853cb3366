"""Throughput over time of bench/throughput.sh's two runs, from the model's timelines.

    python bench/throughput_chart.py FIGURES.json OUT.png

FIGURES.json is what bench/throughput.sh writes: per run ("default", "seed") the model's
byte timeline (`[bytes, most GETs in flight]` per bucket of `bucket_s` seconds) and the
instance cap. Each run is drawn from its first GET; the cap is a dashed line.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(run):
    width = run["bucket_s"]
    rows = run["timeline"]
    first = next(i for i, (b, n) in enumerate(rows) if b or n)
    xs = [(i - first) * width for i in range(first, len(rows))]
    mbps = [rows[i][0] / width / 1e6 for i in range(first, len(rows))]
    gets = [rows[i][1] for i in range(first, len(rows))]
    return xs, mbps, gets


def main(figures, out):
    f = json.load(open(figures))
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    labels = {"default": "default config (sized from c5n.large)",
              "seed": "seed sizing (concurrency 4)"}
    for name in ("default", "seed"):
        run = f[name]
        xs, mbps, gets = series(run)
        (line,) = ax.step(xs, mbps, where="post",
                          label=f"{labels[name]}: {run['mb_per_s']} MB/s, {run['pct_of_cap']} % of cap")
        ax2.step(xs, gets, where="post", color=line.get_color())
    cap = f["default"]["cap_mb_per_s"]
    ax.axhline(cap, linestyle="--", color="grey", label=f"modelled instance cap {cap} MB/s")
    ax.set_ylabel("MB/s (per 100 ms)")
    ax.set_title("rangefleet agent against the S3 network model (bench/throughput.sh)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax2.set_ylabel("GETs in flight")
    ax2.set_xlabel("seconds since the run's first GET")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
