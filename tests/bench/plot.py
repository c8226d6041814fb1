"""Draws the latency plot of tests/bench/run from the driver's JSON results.

usage: plot.py RESULTS.json OUT.png

Left: latency p50 and p99 of each target against offered load (one client, then the fixed
rates). Right: the latency each proxy adds over the direct call at the same load. With
`--peers`, LiteLLM proxy, Portkey's gateway and onwards are lines beside the sidecar.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "direct": "#444444",
    "floor": "#1f77b4",
    "sidecar-minimal": "#2ca02c",
    "sidecar-full": "#d62728",
    "litellm": "#9467bd",
    "portkey": "#ff7f0e",
    "onwards": "#8c564b",
}
LABELS = {
    "direct": "direct",
    "floor": "floor (bare hyper proxy)",
    "sidecar-minimal": "Sluice sidecar, minimal route",
    "sidecar-full": "Sluice sidecar, full feature path",
    "litellm": "LiteLLM proxy",
    "portkey": "Portkey gateway",
    "onwards": "onwards",
}


def series(target):
    """[(x label, load dict)] for one target: one client first, then each fixed rate."""
    points = []
    if target.get("one_client"):
        points.append(("1 client", target["one_client"]))
    for rate, load in target.get("rates", []):
        points.append((f"{rate:,}/s", load))
    return points


def main(results_path, out_path):
    with open(results_path) as f:
        run = json.load(f)
    # The tracing rows are measured with one client only; they are in the report, not the plot.
    targets = {t["target"]: t for t in run["targets"] if not t["target"].startswith("sidecar-traced")}
    direct = dict(series(targets["direct"]))
    labels = [x for x, _ in series(targets["direct"])]
    xs = range(len(labels))

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 7))
    for name, target in targets.items():
        points = dict(series(target))
        color = COLORS.get(name, "black")
        for pct, style in (("p50_us", "-"), ("p99_us", "--")):
            ys = [points[x][pct] if x in points else float("nan") for x in labels]
            left.plot(xs, ys, style, marker="o", color=color,
                      label=f"{LABELS.get(name, name)} {pct[:3]}")
            if name != "direct":
                added = [points[x][pct] - direct[x][pct] if x in points else float("nan") for x in labels]
                right.plot(xs, added, style, marker="o", color=color,
                           label=f"{LABELS.get(name, name)} {pct[:3]}")

    left.set_yscale("log")
    left.set_ylabel("latency (µs, log scale)")
    left.set_title("Latency against offered load")
    right.set_yscale("symlog", linthresh=10)
    right.axhline(0, color="#999999", linewidth=0.8)
    right.set_ylabel("added over direct (µs, symlog)")
    right.set_title("Latency added by each proxy (p50 solid, p99 dashed)")
    for ax in (left, right):
        ax.set_xticks(list(xs), labels)
        ax.set_xlabel("offered load")
        ax.grid(True, which="both", alpha=0.3)
    # One legend for both panels, below them, so that no line hides behind it.
    handles, names = left.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=7, frameon=False)
    machine = run["machine"]
    busy = f", other processes used {machine['other_cpu_cores']:.2f} cores" if machine["other_cpu_cores"] >= 0.1 else ""
    fig.suptitle(
        f"Sluice benchmarks {run['date']} ({'quick' if run['quick'] else 'full'} run, "
        f"{machine['cores']} cores{busy}; loopback, oha with latency correction)",
        fontsize=10,
    )
    rows = -(-len(names) // 4)
    fig.tight_layout(rect=(0, 0.03 * rows + 0.02, 1, 1))
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
