"""Training curves from a run's metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

from genlab.errors import GenlabError


def read_metrics(path: str | Path) -> list[dict]:
    """Read metrics.jsonl rows; a torn last line (killed run) is skipped, other bad lines are errors."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{path} not found: is this a genlab run directory?")
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise GenlabError(f"{path}:{number} is not valid JSON") from None
    return rows


def plot_metrics(metrics_path: str | Path, out_path: str | Path) -> Path:
    """One panel per logged quantity, train and val curves against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for row in rows:
        split = row.get("split")
        if split not in ("train", "val") or "step" not in row:
            continue
        for key, value in row.items():
            if key in ("step", "epoch", "split", "time", "lr") or not isinstance(value, (int, float)):
                continue
            if isinstance(value, bool) or not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, {}).setdefault(split, ([], []))
            xs.append(row["step"])
            ys.append(value)
    if not series:
        raise GenlabError(f"{metrics_path} has no numeric train/val metrics to plot yet")
    names = sorted(series)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        for split, (xs, ys) in series[name].items():
            axis.plot(xs, ys, label=split, marker="o" if len(xs) < 30 else None, markersize=3)
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.legend()
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
