"""EBM benchmarks: training-step speed against the seed's Keras recipe, and sample quality after a training budget.

* ``ebm_step_time`` (quick, full): seconds per training step of the ``ebm-mnist`` recipe (batch 128, 60 Langevin
  steps, the seed's network) with 2 torch threads (and 1, for a contention-robust CPU-time figure), timed on
  MNIST batches after warm-up. Reference: the seed's Keras/TF2 eager recipe takes about 4.2 s per step on the
  project's 2-core machine (issue 8); the target is <= 1.0 s. On a GPU the same figure is recorded for the GPU.
* ``ebm_mnist_samples`` (full): train ``ebm-mnist`` for a wall-clock budget (``genlab bench --budget-minutes``,
  default one hour; never beyond the preset's 60 epochs; ``--resume`` continues the newest run of the preset in
  ``benchmarks/work/ebm_mnist_samples/`` so budgets spread over several sessions add up), draw 1000 samples
  from uniform noise with 1000 Langevin steps, and
  report energy-based OOD AUROCs (MNIST test vs Fashion-MNIST test and vs noise). When :mod:`genlab.eval.judge`
  provides its sample metrics, also the % of samples it recognises with confidence > 0.9 (target >= 80%), the
  class-histogram entropy (target >= 2.2 nats: all ten digits) and the Fréchet distance on its features, beside
  the same numbers for 1000 real test images. Samples, a chain strip and a chain GIF go to the run directory.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.bench import BenchContext, benchmark
from genlab.config import RunConfig, compose_run_config
from genlab.data.datasets import build_data
from genlab.training.callbacks import WallClockBudget
from genlab.training.run import build_model, fit
from genlab.training.optim import build_optimizer
from genlab.training.trainer import seed_everything

SEED_KERAS_STEP = {"value": 4.2, "source": "seed Keras/TF2 eager recipe, same 2-core machine (issue 8)",
                   "higher_is_better": False}
STEP_TARGET_S = 1.0
RECOGNISED_TARGET = {"value": 80.0, "source": "target (issue 8)", "higher_is_better": True}
ENTROPY_TARGET = {"value": 2.2, "source": "target (issue 8)", "higher_is_better": True}
TRAIN_BUDGET_S = 3600.0
N_SAMPLES = 1000
SAMPLE_STEPS = 1000


def preset_config(preset: str = "ebm-mnist", overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    return compose_run_config(preset=preset, overrides=list(overrides))


def _data_flags(data_dir: str | None) -> list[str]:
    return [f"data.data_dir={data_dir}"] if data_dir else []


# ----------------------------------------------------------------------------------------- step time


def measure_step_time(*, threads: int, device: str = "cpu", data_dir: str | None = None, steps: int = 5,
                      warmup: int = 2, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, float]:
    """Median wall and CPU seconds per full training step (Langevin negatives, loss, backward, Adam step).

    The model is ``ebm-mnist`` (with ``overrides``) on MNIST training batches, started from a replay buffer the
    warm-up steps filled; the global RNG is restored afterwards. ``threads`` sets torch's intra-op threads for
    the measurement only.
    """
    config = preset_config("ebm-mnist", [f"train.device={device}", "data.val_size=0", *_data_flags(data_dir),
                                         *overrides])
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[torch.device(device)] if device.startswith("cuda") else []):
            seed_everything(config.train.seed)
            data = build_data(config.data, seed=config.train.seed, splits=("train",))
            model, config = build_model(config, data)
            model.to(device)
            optimizer = build_optimizer(model, config.optim)
            batches = data.train.iter_from(0)
            wall, cpu = [], []
            for index in range(warmup + steps):
                x, y = next(batches)
                x = x.to(device)
                _synchronize(device)
                started, cpu_started = time.perf_counter(), time.process_time()
                loss, _ = model.loss((x, y))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                _synchronize(device)
                if index >= warmup:
                    wall.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - cpu_started)
    finally:
        torch.set_num_threads(previous_threads)
    return {"wall_s_per_step": statistics.median(wall), "cpu_s_per_step": statistics.median(cpu),
            "steps": float(steps), "batch_size": float(config.data.batch_size),
            "langevin_steps": float(config.model.langevin_steps), "threads": float(threads)}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@benchmark("ebm_step_time", suites=("quick", "full"),
           description="EBM training step (batch 128, 60 Langevin steps): s/step vs the seed's Keras 4.2 s")
def bench_step_time(ctx: BenchContext) -> list[dict]:
    common = {"model": "ebm", "dataset": "mnist", "preset": "ebm-mnist"}
    if ctx.device.startswith("cuda"):
        return _gpu_step_records(ctx, common)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    records = []
    two = measure_step_time(threads=2, data_dir=ctx.data_dir)
    one = measure_step_time(threads=1, data_dir=ctx.data_dir)
    fast = measure_step_time(threads=2, data_dir=ctx.data_dir, overrides=["model.fast_input_grad=true"])
    records += [
        {**common, "metric": "train_step_time_cpu_2threads_fast_input_grad", "value": fast["wall_s_per_step"],
         "unit": "s/step", "reference": SEED_KERAS_STEP},
        {**common, "metric": "train_step_time_cpu_2threads", "value": two["wall_s_per_step"], "unit": "s/step",
         "reference": SEED_KERAS_STEP},
        {**common, "metric": "speedup_vs_seed_keras_2threads", "value": SEED_KERAS_STEP["value"] /
         two["wall_s_per_step"], "unit": "x", "reference": {"value": SEED_KERAS_STEP["value"] / STEP_TARGET_S,
                                                            "source": "target: <= 1.0 s/step (issue 8)",
                                                            "higher_is_better": True}},
        {**common, "metric": "train_step_time_cpu_1thread", "value": one["wall_s_per_step"], "unit": "s/step"},
        {**common, "metric": "train_step_cpu_seconds_1thread", "value": one["cpu_s_per_step"],
         "unit": "cpu-s/step"},
    ]
    ctx.notes.append(
        f"ebm-mnist step (batch {int(two['batch_size'])}, {int(two['langevin_steps'])} Langevin steps, the seed's "
        f"conv energy) on MNIST, median of {int(two['steps'])} steps after warm-up; 1-min load average "
        f"{load:.1f} on {os.cpu_count()} cores when measured (other processes slow multi-threaded timings "
        "most; the 1-thread CPU seconds are the contention-robust figure).")
    return records


def _gpu_step_records(ctx: BenchContext, common: dict) -> list[dict]:
    """The same step on a GPU. The seed's 4.2 s was measured on the 2-core CPU machine, so no ratio to it here;
    the CPU figures come from a run on that machine (``ebm_step_time.json``)."""
    default, fast, graphed = (measure_step_time(threads=2, device=ctx.device, data_dir=ctx.data_dir, steps=20,
                                                warmup=5, overrides=overrides)
                              for overrides in ([], ["model.fast_input_grad=true"], ["model.cuda_graphs=true"]))
    ctx.notes.append(
        f"ebm-mnist step (batch {int(default['batch_size'])}, {int(default['langevin_steps'])} Langevin steps) on "
        f"{torch.cuda.get_device_name(torch.device(ctx.device))}, median of {int(default['steps'])} steps after "
        "5 warm-up steps, synchronised before and after each step; float32, no torch.compile. cuda_graphs: the "
        "Langevin chain replayed as one CUDA graph (the eager samples, bit for bit with deterministic cuDNN, "
        "tested); its capture is in the warm-up.")
    return [
        {**common, "metric": "train_step_time_gpu", "value": default["wall_s_per_step"], "unit": "s/step"},
        {**common, "metric": "train_step_time_gpu_fast_input_grad", "value": fast["wall_s_per_step"],
         "unit": "s/step"},
        {**common, "metric": "train_step_time_gpu_cuda_graphs", "value": graphed["wall_s_per_step"],
         "unit": "s/step"},
        {**common, "metric": "speedup_cuda_graphs_vs_eager_gpu",
         "value": default["wall_s_per_step"] / graphed["wall_s_per_step"], "unit": "x"},
    ]


# ----------------------------------------------------------------------------------------- samples after a budget


def train_for_budget(budget_s: float, *, work_dir: Path, device: str = "cpu", data_dir: str | None = None,
                     overrides: list[str] | tuple[str, ...] = (), resume: bool = False,
                     ) -> tuple[Any, RunConfig, Any, dict[str, float]]:
    """Train ``ebm-mnist`` (with ``overrides``) until ``budget_s`` seconds of wall-clock time or the preset's
    epochs, whichever comes first. ``resume``: continue the newest run under ``work_dir`` that trains the same
    thing (:func:`genlab.training.run.find_resumable_run`) from its last checkpoint, so budgets add up; a new run
    when there is none. Returns (model, config, data bundle, facts) with the run directory in ``model.run_dir``;
    ``facts`` counts steps, epochs and training time over the whole run, and this call's share separately."""
    guard = WallClockBudget(budget_s, time.perf_counter())
    config = preset_config("ebm-mnist", ["train.progress=false", f"train.device={device}",
                                         f"train.out_dir={work_dir}", *_data_flags(data_dir), *overrides])
    outcome = fit(config, resume_matching_in=work_dir if resume else None, extra_callbacks=(guard,))
    trainer, model = outcome.trainer, outcome.trainer.model
    model.run_dir = outcome.run_dir
    facts = {"train_s": trainer.elapsed, "steps": float(trainer.step),
             "epochs": trainer.step / len(outcome.data.train),
             "session_train_s": trainer.elapsed - outcome.first_elapsed,
             "session_steps": float(trainer.step - outcome.first_step),
             "resumed_from_step": float(outcome.first_step), "stopped_early": float(guard.stopped_early),
             "rollbacks": float(model.rollbacks), "step_size": float(model.current_step_size)}
    return model, outcome.config, outcome.data, facts


@torch.no_grad()
def draw_samples(model, n: int, *, steps: int, batch_size: int = 250, seed: int = 0) -> Tensor:
    """``n`` samples (n, C, H, W) from uniform noise after ``steps`` Langevin steps, in batches, on CPU."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    pieces = [model.sample(min(batch_size, n - start), generator=generator, steps=steps).cpu()
              for start in range(0, n, batch_size)]
    return torch.cat(pieces)


def save_chain_pictures(model, out_dir: Path, *, steps: int, chains: int = 8, frames: int = 50,
                        seed: int = 0) -> list[Path]:
    """A strip (one chain per row) and a GIF of ``chains`` Langevin chains from noise, ``frames`` frames each."""
    from genlab.image_files import make_grid, save_gif, save_grid

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    every = max(1, steps // frames)
    chain = model.sample_chain(chains, steps=steps, generator=generator, every=every).cpu()
    value_range = (model.low, model.high)
    strip_frames = chain[torch.linspace(0, chain.shape[0] - 1, 10).round().long()]  # (10, chains, C, H, W)
    strip = save_grid(strip_frames.transpose(0, 1).reshape(-1, *chain.shape[2:]), out_dir / "chain-strip.png",
                      ncol=strip_frames.shape[0], value_range=value_range)
    gif = save_gif([make_grid(frame, ncol=chains, value_range=value_range) for frame in chain],
                   out_dir / "chain.gif", duration_ms=80)
    return [strip, gif]


def judge_metrics(samples: Tensor, real: Tensor, *, value_range: tuple[float, float], data_dir: str | None = None,
                  device: str = "cpu", judge: Any = None) -> dict[str, Any] | None:
    """The project judge's sample metrics (:mod:`genlab.eval.judge`) for ``samples`` and, as the floor, for
    ``real`` held-out test images, both against the judge's training-image reference features.

    Images are (n, 1, 32, 32) in ``value_range`` (the judge crops the padding). ``judge`` defaults to the cached
    MNIST judge (trained now if none is cached). Returns ``{samples,real}_recognised_pct`` (max-class probability
    > 0.9), ``_class_entropy_nats``, ``_frechet_distance``, ``_kid``, ``_kid_stderr`` and ``_class_counts``; None
    when the judge module is not installed.
    """
    try:
        from genlab.eval import judge as judge_module
    except ImportError:
        return None
    if judge is None:
        judge = judge_module.load_judge("mnist", data_dir=data_dir, device=device)
    reference = judge_module.reference_set(judge, data_dir=data_dir)
    result: dict[str, Any] = {}
    for name, images in (("samples", samples), ("real", real)):
        quality = judge_module.sample_quality(judge, images, reference, value_range=value_range,
                                              generator=torch.Generator().manual_seed(0))
        result.update({f"{name}_recognised_pct": 100.0 * quality.confident_frac,
                       f"{name}_class_entropy_nats": quality.class_entropy_nats,
                       f"{name}_frechet_distance": quality.fd, f"{name}_kid": quality.kid,
                       f"{name}_kid_stderr": quality.kid_stderr, f"{name}_class_counts": quality.class_counts})
    result["reference"] = reference.name
    return result


def train_and_judge(*, budget_s: float, work_dir: Path, device: str = "cpu", data_dir: str | None = None,
                    n_samples: int = N_SAMPLES, sample_steps: int = SAMPLE_STEPS,
                    overrides: list[str] | tuple[str, ...] = (), judge: Any = None,
                    resume: bool = False) -> dict[str, Any]:
    """Train for ``budget_s`` (``resume``: continuing the newest matching run, see :func:`train_for_budget`),
    sample, write pictures, score OOD and (if available) judge the samples (``judge``: a
    :class:`genlab.eval.judge.Judge`; default the cached MNIST judge)."""
    from genlab.image_files import save_grid

    model, config, data, facts = train_for_budget(budget_s, work_dir=work_dir, device=device, data_dir=data_dir,
                                                  overrides=overrides, resume=resume)
    run_dir = model.run_dir
    sampling_started = time.perf_counter()
    samples = draw_samples(model, n_samples, steps=sample_steps)
    facts["sample_s"] = time.perf_counter() - sampling_started
    value_range = (model.low, model.high)
    save_grid(samples[:100], run_dir / "samples-from-noise.png", value_range=value_range)
    save_chain_pictures(model, run_dir, steps=sample_steps)
    test_device = next(model.parameters()).device
    ood = model.evaluate(((x.to(test_device), y) for x, y in data.test), ood="fashion-mnist",
                         data_dir=config.data.data_dir)
    real = torch.cat([x for x, _ in data.test])[:n_samples]
    judged = judge_metrics(samples, real, value_range=value_range, data_dir=config.data.data_dir, judge=judge)
    return {**facts, **ood, "judge": judged, "run_dir": str(run_dir), "n_samples": float(n_samples),
            "sample_steps": float(sample_steps)}


@benchmark("ebm_mnist_samples", suites=("full",), resumable=True,
           description="ebm-mnist trained for a wall-clock budget: 1000 samples from noise judged; OOD AUROC")
def bench_samples(ctx: BenchContext) -> list[dict]:
    # On a GPU the Langevin chains replay as CUDA graphs: the eager samples (tested), 4.9x faster per step on an
    # H100 (ebm_step_time.cuda.json).
    overrides = ["model.cuda_graphs=true"] if ctx.device.startswith("cuda") else []
    result = train_and_judge(budget_s=ctx.budget(TRAIN_BUDGET_S), work_dir=ctx.work_dir, device=ctx.device,
                             data_dir=ctx.data_dir, resume=ctx.resume, overrides=overrides)
    common = {"model": "ebm", "dataset": "mnist", "preset": "ebm-mnist"}
    records = [
        {**common, "metric": "epochs_trained", "value": result["epochs"], "unit": "epochs"},
        {**common, "metric": "train_time", "value": result["train_s"] / 60.0, "unit": "min"},
        {**common, "metric": "rollbacks", "value": result["rollbacks"], "unit": "count"},
        {**common, "metric": "auroc_mnist_vs_fashion_mnist", "value": result["auroc_fashion_mnist"], "unit": "AUROC"},
        {**common, "metric": "auroc_mnist_vs_uniform_noise", "value": result["auroc_noise"], "unit": "AUROC"},
        {**common, "metric": "sampling_time_1000x1000", "value": result["sample_s"], "unit": "s"},
    ]
    records += _judge_records(ctx, common, result["judge"])
    run_dir = Path(result["run_dir"])
    ctx.keep_picture(run_dir / "samples-from-noise.png", "ebm-mnist-samples-from-noise.png",
                     f"EBM: samples after {int(result['sample_steps'])} Langevin steps from uniform noise")
    ctx.keep_picture(run_dir / "chain-strip.png", "ebm-mnist-chain-strip.png",
                     "EBM: Langevin chains from noise (one per row, left to right)")
    resumed = (f" (continued from step {int(result['resumed_from_step'])}; this run trained "
               f"{int(result['session_steps'])} steps in {result['session_train_s'] / 60:.1f} min)"
               if result["resumed_from_step"] else "")
    ctx.notes.append(
        f"ebm-mnist trained {result['epochs']:.2f} epochs ({int(result['steps'])} steps) in "
        f"{result['train_s'] / 60:.1f} min of training loop on {ctx.device} with {torch.get_num_threads()} threads"
        f"{resumed}{' (stopped by the budget)' if result['stopped_early'] else ''}; "
        f"{int(result['rollbacks'])} roll-back(s), "
        f"final Langevin step {result['step_size']:g}; {int(result['n_samples'])} samples from noise with "
        f"{int(result['sample_steps'])} Langevin steps in {result['sample_s']:.0f} s. Run: {result['run_dir']}.")
    return records


def _judge_records(ctx: BenchContext, common: dict, judged: dict[str, Any] | None) -> list[dict]:
    """Records for the judge's numbers (samples, and real test images as the floor); a note when skipped."""
    if judged is None:
        ctx.notes.append("genlab.eval.judge is not installed: sample-quality metrics skipped.")
        return []
    fd_unit = "FD (genlab judge features; not FID)"
    records = [
        {**common, "metric": "recognised_conf_0.9_pct", "value": judged["samples_recognised_pct"], "unit": "%",
         "reference": RECOGNISED_TARGET},
        {**common, "metric": "class_entropy", "value": judged["samples_class_entropy_nats"], "unit": "nats",
         "reference": ENTROPY_TARGET},
        {**common, "metric": "frechet_distance_judge", "value": judged["samples_frechet_distance"],
         "unit": fd_unit},
        {**common, "metric": "kid_judge", "value": judged["samples_kid"], "unit": "KID (genlab judge)",
         "se": judged["samples_kid_stderr"]},
        {**common, "metric": "frechet_distance_judge_real_test", "value": judged["real_frechet_distance"],
         "unit": fd_unit},
        {**common, "metric": "recognised_conf_0.9_pct_real_test", "value": judged["real_recognised_pct"],
         "unit": "%"},
    ]
    ctx.notes.append(f"judge class histogram of the samples (digits 0-9): {judged['samples_class_counts']}; "
                     f"FD/KID against {judged['reference']}, real test images give the floor.")
    return records
