"""The report's plots (PNG, matplotlib Agg): ours beside the papers, judge FD per image source, FD of 10,000
samples against training minutes, and benchmark wall times. :func:`write_plots` draws those the results have
data for and removes stale ones.

Split out of :mod:`genlab.bench.report` (the Markdown tables), whose ``write_report`` calls :func:`write_plots`.
"""

from __future__ import annotations

from pathlib import Path

from genlab.bench.report import leaderboard_10k_rows, leaderboard_rows, sample_quality_rows


PLOT_FILES = {"paper_comparison": "Ours beside the papers", "sample_quality": "Judge FD per image source",
              "leaderboard_10k": "FD of 10,000 samples against CPU minutes of training",
              "bench_wall_time": "Benchmark wall time"}


def write_plots(documents: list[dict], plots_dir: Path) -> dict[str, Path]:
    """Draw the plots that the results have data for into ``plots_dir`` (PNG); remove stale ones.
    Returns {caption: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path] = {}
    for name, draw in (("paper_comparison", _plot_papers), ("sample_quality", _plot_sample_quality),
                       ("leaderboard_10k", _plot_leaderboard_10k), ("bench_wall_time", _plot_wall_time)):
        path = plots_dir / f"{name}.png"
        figure = draw(documents, plt)
        if figure is None:
            path.unlink(missing_ok=True)  # no data now: never leave a stale picture behind
            continue
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        drawn[PLOT_FILES[name]] = path
    return drawn


def _plot_papers(documents, plt):
    """One panel per measured leaderboard row: our value (with its standard error) as a point, the paper's as a
    line, on an axis scaled to the two (bars from zero would hide an 86-vs-88-nat difference)."""
    measured = [e for e in leaderboard_rows(documents) if isinstance(e.get("ours"), (int, float))]
    if not measured:
        return None
    ncols = min(4, len(measured))
    nrows = -(-len(measured) // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for axis in list(axes.flat)[len(measured):]:
        axis.axis("off")
    for axis, entry in zip(axes.flat, measured):
        axis.axhline(entry["paper"], color="tab:gray", linestyle="--", label="paper")
        stderr = entry.get("stderr") if isinstance(entry.get("stderr"), (int, float)) else None
        axis.errorbar([0], [entry["ours"]], yerr=stderr, fmt="o", color="tab:blue", capsize=4, label="ours")
        axis.set_xticks([])
        axis.set_xlim(-1, 1)
        axis.margins(y=0.4)
        axis.set_title(f"{entry['model']} {entry['dataset']}\n{entry['metric']}", fontsize=8)
        axis.set_ylabel(entry["unit"], fontsize=8)
        axis.tick_params(labelsize=8)
        axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def _plot_sample_quality(documents, plt):
    """Judge FD per image source, one panel per dataset, log axis (points, since log-scale bars mislead)."""
    rows = [r for r in sample_quality_rows(documents) if isinstance(r.get("judge_fd"), (int, float))]
    if not rows:
        return None
    datasets = sorted({str(r["dataset"]) for r in rows})
    figure, axes = plt.subplots(len(datasets), 1, figsize=(7, 0.4 * len(rows) + 1.2 * len(datasets)),
                                squeeze=False)
    for axis, dataset in zip(axes.flat, datasets):
        subset = [r for r in rows if str(r["dataset"]) == dataset]
        labels = [str(r["model"]) for r in subset]
        values = [max(float(r["judge_fd"]), 1e-6) for r in subset]
        colours = ["tab:green" if "floor" in label else "tab:blue" for label in labels]
        axis.scatter(values, labels, color=colours, zorder=3)
        for value, label in zip(values, labels):
            axis.annotate(f"{value:.3g}", (value, label), textcoords="offset points", xytext=(6, -3), fontsize=7)
        axis.set_xscale("log")
        axis.margins(x=0.15, y=0.25)
        axis.grid(True, axis="x", which="both", alpha=0.3)
        axis.invert_yaxis()
        axis.set_title(f"{dataset}: FD on genlab-judge features (lower is closer to real data)", fontsize=9)
        axis.tick_params(labelsize=8)
    figure.tight_layout()
    return figure


def _plot_leaderboard_10k(documents, plt):
    """FD of 10,000 samples against training minutes, one point per model, the real-test floor as a line."""
    rows = [r for r in leaderboard_10k_rows(documents) if isinstance(r.get("judge_fd_10k"), (int, float))]
    models = [r for r in rows if not r["floor"] and isinstance(r.get("train_minutes"), (int, float))]
    if not models:
        return None
    datasets = sorted({str(r["dataset"]) for r in models})
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for axis, dataset in zip(axes.flat, datasets):
        for row in (r for r in models if str(r["dataset"]) == dataset):
            axis.scatter([row["train_minutes"]], [row["judge_fd_10k"]], zorder=3)
            axis.annotate(f"{row['model']} ({row['device']})", (row["train_minutes"], row["judge_fd_10k"]),
                          textcoords="offset points", xytext=(5, 3), fontsize=7)
        for row in (r for r in rows if r["floor"] and str(r["dataset"]) == dataset):
            axis.axhline(row["judge_fd_10k"], color="tab:green", linestyle="--", label="real test images")
        axis.set_yscale("log")
        axis.set_xlabel("training, minutes")
        axis.set_ylabel("FD (genlab judge), 10k samples")
        axis.set_title(dataset, fontsize=9)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _plot_wall_time(documents, plt):
    timed = [d for d in documents if isinstance(d.get("wall_s"), (int, float))]
    if not timed:
        return None
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(timed) + 1.0))
    colours = ["tab:blue" if d.get("status") == "ok" else "tab:red" for d in timed]
    axis.barh([str(d.get("benchmark")) for d in timed], [float(d["wall_s"]) for d in timed], color=colours)
    axis.invert_yaxis()
    axis.set_xlabel("wall time, s (red: failed)")
    axis.tick_params(labelsize=8)
    figure.tight_layout()
    return figure
