"""Hopfield benchmarks: the capacity curve of Hebbian storage (breakdown near 0.138 N, Amit, Gutfreund &
Sompolinsky 1985) and recall of stored MNIST digits from corrupted copies, Hebbian against projection rule."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from genlab.bench import BenchContext, benchmark

# Higher is better in the sense of more capacity; finite N also lands above the N -> infinity value.
AGS_CRITICAL_LOAD = {"value": 0.138, "source": "Amit, Gutfreund & Sompolinsky 1985 (N -> infinity)",
                     "higher_is_better": True}


def plot_capacity(curve: dict[str, list[float]], critical: float, n_units: int, path: Path) -> Path:
    """Recall success and mean final overlap against the load P/N, with the theoretical and measured breakdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    axis.plot(curve["load"], curve["success"], "o-", label="recall success (overlap >= 0.95)")
    axis.plot(curve["load"], curve["mean_overlap"], "s--", label="mean final overlap")
    axis.plot(curve["load"], curve["exact"], "^:", label="exact recall")
    axis.axvline(AGS_CRITICAL_LOAD["value"], color="grey", linestyle="--", label="theory 0.138")
    if critical == critical:  # not NaN
        axis.axvline(critical, color="red", linestyle=":", label=f"measured {critical:.3f}")
    axis.set_xlabel("load P / N")
    axis.set_ylabel("fraction")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(f"Hopfield network capacity, Hebbian rule, N = {n_units}")
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def capacity_records(work_dir: Path, *, n_units: int = 400, loads: Sequence[float] | None = None,
                     trials: int = 2, steps: int = 10, seed: int = 0) -> tuple[list[dict], list[str]]:
    """Measure the capacity curve, draw it to ``work_dir/hopfield_capacity.png``; return records and notes."""
    from genlab.models.hopfield import capacity_curve, critical_load

    loads = list(loads) if loads is not None else [round(0.02 * i, 2) for i in range(1, 16)]
    started = time.perf_counter()
    curve = capacity_curve(n_units, loads, trials=trials, steps=steps, generator=torch.Generator().manual_seed(seed))
    critical = critical_load(curve["load"], curve["success"])
    picture = plot_capacity(curve, critical, n_units, Path(work_dir) / "hopfield_capacity.png")
    common = {"model": f"hopfield hebbian N={n_units}", "dataset": "random ±1 patterns"}
    records = [{**common, "metric": "critical_load", "value": round(critical, 4), "unit": "P/N",
                "reference": AGS_CRITICAL_LOAD, "wall_s": round(time.perf_counter() - started, 2)}]
    for load, success, mean_overlap in zip(curve["load"], curve["success"], curve["mean_overlap"]):
        records.append({**common, "metric": f"recall_success@load={load:g}", "value": round(success, 3),
                        "unit": "fraction"})
        records.append({**common, "metric": f"mean_overlap@load={load:g}", "value": round(mean_overlap, 3),
                        "unit": "overlap"})
    notes = [f"capacity curve: {picture}; success = final overlap >= 0.95 after {steps} asynchronous sweeps "
             f"from each stored pattern, {trials} networks per load; critical load = where success crosses 0.5. "
             "Finite N moves the breakdown above the N -> infinity value 0.138."]
    return records, notes


def mnist_recall_records(work_dir: Path, *, device: str = "cpu", data_dir: str | None = None,
                         overrides: Sequence[str] = ()) -> tuple[list[dict], list[str]]:
    """Train (store) the ``hopfield-mnist`` preset once per rule and evaluate corrupted-digit recall."""
    from genlab.bench.dbn_bench import preset_config
    from genlab.training.checkpoint import load_model
    from genlab.training.run import train

    records, notes = [], []
    for rule in ("projection", "hebbian"):
        config = preset_config("hopfield-mnist", work_dir=Path(work_dir), device=device, data_dir=data_dir,
                               overrides=[f"model.rule={rule}", *overrides])
        started = time.perf_counter()
        run_dir = train(config)
        model, _ = load_model(run_dir, device)
        metrics = model.evaluate([], generator=torch.Generator(device=device).manual_seed(0))
        wall = round(time.perf_counter() - started, 2)
        common = {"model": f"hopfield {rule}, {int(metrics['n_stored'])} digits", "dataset": "mnist",
                  "wall_s": wall}
        corruption = f"{100 * metrics['corruption']:.0f}% flipped"
        records += [
            {**common, "metric": f"recall_accuracy_pct ({corruption})",
             "value": round(metrics["recall_accuracy_pct"], 2), "unit": "%"},
            {**common, "metric": f"overlap ({corruption})", "value": round(metrics["overlap"], 4), "unit": "overlap"},
            {**common, "metric": f"bit_error_pct ({corruption})", "value": round(metrics["bit_error_pct"], 3),
             "unit": "%"},
        ]
        notes.append(f"{rule}: run {run_dir}")
    notes.append("MNIST digits share most of their background, so their Hebbian crosstalk is large: the plain "
                 "Hebbian rule fails on them long before 0.138 N, while the projection rule stores them exactly.")
    return records, notes


@benchmark("hopfield-capacity", suites=("quick", "full"),
           description="Hebbian Hopfield capacity curve (recall vs P/N) and the measured critical load")
def hopfield_capacity(ctx: BenchContext) -> list[dict]:
    n_units = 400 if ctx.suite == "quick" else 1000
    records, notes = capacity_records(ctx.work_dir, n_units=n_units, trials=2 if ctx.suite == "quick" else 3)
    ctx.notes.extend(notes)
    return records


@benchmark("hopfield-mnist", suites=("quick", "full"),
           description="recall of 10 stored MNIST digits from 20%-corrupted copies, projection vs Hebbian rule")
def hopfield_mnist(ctx: BenchContext) -> list[dict]:
    records, notes = mnist_recall_records(ctx.work_dir, device=ctx.device, data_dir=ctx.data_dir)
    ctx.notes.extend(notes)
    return records
