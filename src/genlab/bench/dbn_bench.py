"""DBN benchmark: the Hinton, Osindero & Teh (2006) MNIST model.

One run of the ``dbn-hinton2006`` preset (greedy pretraining of 784-500-500-2000 with 10 label units, then
backprop fine-tuning of 784-500-500-2000-10) gives: the fine-tuned test error (reference 1.25%, Hinton et al.
2006), the generative DBN's own free-energy classification error, wall and CPU time of training, and the share
of label-clamped samples that an independent classifier recognises as the clamped label (target >= 90%).

The independent classifier is the project's MNIST judge (:func:`genlab.eval.judge.load_judge`, a CNN trained on
the training set only, cached); where that module is unavailable, or for smoke runs, a small MLP (784-512-10,
ReLU) is trained here on the MNIST training set. Its test accuracy is recorded beside the recognition rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.bench import BenchContext, benchmark
from genlab.config import DataConfig, compose_run_config

HINTON2006 = {"value": 1.25, "source": "Hinton, Osindero & Teh 2006", "higher_is_better": False}
SRIVASTAVA2014 = {"value": 1.0, "source": "target <= 1.0% (Srivastava et al. 2014, DBN + dropout fine-tuning: 0.92%)",
                  "higher_is_better": False}
RECOGNITION_TARGET = {"value": 90.0, "source": "target: >= 90%", "higher_is_better": True}

Predictor = Callable[[Tensor], Tensor]


def preset_config(preset: str, *, work_dir: Path, device: str, data_dir: str | None, overrides: Sequence[str] = ()):
    """The preset's RunConfig with the benchmark's device, output directory and data location."""
    flags = [f"train.device={device}", "train.progress=false", f"train.out_dir={work_dir}"]
    if data_dir:
        flags.append(f"data.data_dir={data_dir}")
    return compose_run_config(preset=preset, overrides=flags + list(overrides))


def project_judge(data_dir: str | None) -> tuple[Predictor, float] | None:
    """The project's MNIST judge (trained and cached on first use) and its test accuracy in %, or None where
    :mod:`genlab.eval.judge` is not available."""
    try:
        from genlab.eval import judge as judge_module
    except ImportError:
        return None
    load = getattr(judge_module, "load_judge", None)
    if load is None:
        return None
    judge = load("mnist", data_dir=data_dir)
    return (lambda images: judge.probabilities(images).argmax(1)), float(judge.info.test_accuracy_pct)


def train_reference_classifier(data_dir: str | None, *, epochs: int = 3, limit: int = 0,
                               seed: int = 0) -> tuple[Predictor, float]:
    """A 784-512-10 ReLU MLP trained with Adam on MNIST (never on generated data).

    Returns the predictor (images (n, 1, 28, 28) in [0, 1] -> labels (n,)) and its test accuracy in %.
    """
    from genlab.data.datasets import build_data

    torch.manual_seed(seed)
    data = build_data(DataConfig(dataset="mnist", data_dir=data_dir, val_size=0, batch_size=128, limit=limit),
                      seed=seed, splits=("train", "test"))
    network = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    for epoch in range(epochs):
        data.train.set_epoch(epoch)
        for x, y in data.train:
            loss = F.cross_entropy(network(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    network.eval()

    @torch.no_grad()
    def predict(images: Tensor) -> Tensor:
        return network(images.reshape(images.shape[0], 1, 28, 28).float().cpu()).argmax(1)

    correct = total = 0
    for x, y in data.test:
        correct += int((predict(x) == y).sum())
        total += len(y)
    return predict, 100.0 * correct / max(total, 1)


@torch.no_grad()
def label_recognition(model, predict: Predictor, *, per_label: int, steps: int | None = None,
                      seed: int = 0, n_labels: int = 10, grid: Path | None = None,
                      **sample_options) -> tuple[float, list[float]]:
    """% of label-clamped samples (``per_label`` for each label) that ``predict`` assigns to their label,
    overall and per label; ``sample_options`` go to ``model.sample`` (e.g. ``label_gain``). ``grid``: also
    save the first 10 samples of each label there, one row per label."""
    generator = torch.Generator().manual_seed(seed)
    per_class, rows = [], []
    for label in range(n_labels):
        images = model.sample(per_label, generator=generator, steps=steps, label=label, **sample_options)
        per_class.append(100.0 * float((predict(images.cpu()) == label).float().mean()))
        rows.append(images[:10].cpu())
    if grid is not None:
        from genlab.image_files import save_grid

        save_grid(torch.cat(rows), grid, ncol=min(10, per_label))
    return sum(per_class) / len(per_class), per_class


def hinton2006_records(work_dir: Path, *, device: str = "cpu", data_dir: str | None = None,
                       overrides: Sequence[str] = (), samples_per_label: int = 100, sample_steps: int | None = None,
                       classifier_epochs: int = 3, classifier_limit: int = 0, use_judge: bool = True,
                       preset: str = "dbn-hinton2006",
                       judge_samples: bool = True) -> tuple[list[dict], list[str], Path]:
    """Train the preset (with ``overrides``), evaluate it, and (``judge_samples``) judge its label-clamped samples.

    Returns benchmark records, notes and the run directory (with the label-clamped sample grids). Small
    ``overrides`` (``data.limit``, tiny layers) and ``use_judge=False`` (a quickly trained MLP instead of the
    project judge) make a smoke run.
    """
    from genlab.data.datasets import build_data
    from genlab.training.checkpoint import load_model
    from genlab.training.run import train

    config = preset_config(preset, work_dir=Path(work_dir), device=device, data_dir=data_dir, overrides=overrides)
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    run_dir = train(config)
    wall_s, cpu_s = time.perf_counter() - wall_started, time.process_time() - cpu_started
    model, run_config = load_model(run_dir, device)
    data = build_data(run_config.data, seed=run_config.train.seed, splits=("test",))
    batches = ((x.to(device), y.to(device)) for x, y in data.test)
    metrics = model.evaluate(batches, generator=torch.Generator().manual_seed(0))
    layers = "-".join(str(size) for size in run_config.model.dbn.layers) + f"-{run_config.model.n_classes}"
    common = {"model": f"dbn-classifier {layers}", "dataset": "mnist"}
    records = [
        {**common, "metric": "test_error_pct", "value": round(metrics["test_error_pct"], 3), "unit": "%",
         "reference": HINTON2006, "wall_s": round(wall_s, 1)},
        {**common, "metric": "train_wall_s", "value": round(wall_s, 1), "unit": "s"},
        {**common, "metric": "train_cpu_s", "value": round(cpu_s, 1), "unit": "s (CPU time, all threads)"},
    ]
    if "test_generative_error_pct" in metrics:
        records.append({**common, "model": "dbn (generative, free energy)", "metric": "test_error_pct",
                        "value": round(metrics["test_generative_error_pct"], 3), "unit": "%",
                        "reference": HINTON2006})
    notes = [f"run directory {run_dir}; {torch.get_num_threads()} torch threads; epochs {run_config.train.epochs} "
             f"({run_config.model.pretrain_epochs} DBN pretraining)"]
    if judge_samples and run_config.model.has_generative and run_config.model.dbn.n_labels:
        found = project_judge(data_dir) if use_judge else None
        if found is not None:
            (predict, accuracy), judge_name = found, "genlab judge (CNN)"
        else:
            predict, accuracy = train_reference_classifier(data_dir, epochs=classifier_epochs,
                                                           limit=classifier_limit)
            judge_name = "MLP 784-512-10 trained in this benchmark"
        records.append({"model": judge_name, "dataset": "mnist", "metric": "judge_test_accuracy_pct",
                        "value": round(accuracy, 2), "unit": "%"})
        steps_used = sample_steps or run_config.model.dbn.sample_steps
        # The model's own conditional first (the headline), then two variations that show what the number
        # depends on: one binary down pass instead of the mean-field decoding, and a doubled label unit.
        variants = (("", {}, "the model's p(image | label), mean-field down pass"),
                    ("_sampled_down", {"mean_field": False}, "one sampled down pass"),
                    ("_label_gain_2", {"label_gain": 2.0}, "label unit clamped at 2: a tempered conditional"))
        for suffix, options, what in variants:
            rate, per_label = label_recognition(model.cpu(), predict, per_label=samples_per_label,
                                                steps=sample_steps, grid=run_dir / f"label-clamped{suffix}.png",
                                                **options)
            record = {**common, "model": f"dbn (label-clamped samples{', ' + what if suffix else ''})",
                      "metric": f"label_recognised_pct{suffix}", "value": round(rate, 2), "unit": "%"}
            if not suffix:
                record["reference"] = RECOGNITION_TARGET
            records.append(record)
            notes.append(f"label-clamped samples ({what}) judged by {judge_name}: {samples_per_label} per label, "
                         f"{steps_used} Gibbs steps; per label "
                         + ", ".join(f"{k}: {v:.0f}%" for k, v in enumerate(per_label)))
    return records, notes, Path(run_dir)


@benchmark("dbn-hinton2006", suites=("full",),
           description="784-500-500-2000 DBN + labels, greedy pretraining + backprop: test error %, CPU time, "
                       "label-clamped samples recognised")
def dbn_hinton2006(ctx: BenchContext) -> list[dict]:
    records, notes, run_dir = hinton2006_records(ctx.work_dir, device=ctx.device, data_dir=ctx.data_dir)
    ctx.notes.extend(notes)
    for suffix, caption in (("", "the model's conditional"), ("_label_gain_2", "label unit clamped at 2")):
        ctx.keep_picture(run_dir / f"label-clamped{suffix}.png", f"dbn-hinton2006-label-clamped{suffix}.png",
                         f"DBN label-clamped samples, one row per label 0-9 ({caption})")
    return records


def pretrained_run(root: Path) -> tuple[Path, float] | None:
    """The newest run under ``root`` (a ``dbn-hinton2006`` benchmark work directory) whose DBN finished its
    pretraining, i.e. whose metrics log reached backprop fine-tuning, with the wall seconds that pretraining took;
    None where there is no such run (or it kept no complete checkpoint to fine-tune from)."""
    import json

    from genlab.checkpoint_files import list_checkpoints

    runs = sorted((path.parent for path in Path(root).glob("*/metrics.jsonl")), key=lambda run: run.name)
    for run in reversed(runs):
        pretraining_s, finetuned = 0.0, False
        for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed run
            if "ce_nats" in row:
                finetuned = True
            elif row.get("split") == "train":
                pretraining_s = max(pretraining_s, float(row.get("time", 0.0)))
        if finetuned and list_checkpoints(run / "checkpoints"):
            return run, pretraining_s
    return None


@benchmark("dbn-dropout", suites=("full",),
           description="the dbn-hinton2006 DBN fine-tuned by backprop with dropout (dbn-dropout preset): test error %")
def dbn_dropout(ctx: BenchContext) -> list[dict]:
    """Pretraining is the same recipe as ``dbn-hinton2006``'s, so the newest pretrained DBN of that benchmark's
    work directory is fine-tuned (its pretraining time counted in ``train_wall_s``); with none there, the
    ``dbn-dropout`` preset trains from scratch."""
    from genlab.config import compose_run_config

    source = pretrained_run(ctx.work_dir.parent / "dbn-hinton2006")
    overrides: list[str] = []
    if source is not None:
        finetune_epochs = compose_run_config(preset="dbn-dropout").train.epochs - \
            compose_run_config(preset="dbn-hinton2006").model.pretrain_epochs
        overrides = [f"model.init_from={source[0]}", f"train.epochs={finetune_epochs}"]
    records, notes, _ = hinton2006_records(ctx.work_dir, device=ctx.device, data_dir=ctx.data_dir,
                                           preset="dbn-dropout", overrides=overrides, judge_samples=False)
    ctx.notes.extend(notes)
    if source is not None:
        for record in records:  # wall time from scratch: the source's pretraining plus this fine-tuning
            if record["metric"] == "train_wall_s":
                record["value"] = round(record["value"] + source[1], 1)
            elif "wall_s" in record:
                record["wall_s"] = round(record["wall_s"] + source[1], 1)
        ctx.notes.append(f"fine-tuned the pretrained DBN of {source[0]} (the same pretraining recipe; its "
                         f"{source[1]:.0f} s of pretraining are included in train_wall_s); train_cpu_s is the "
                         "fine-tuning's alone")
    else:
        ctx.notes.append("no pretrained dbn-hinton2006 run in the work directory: pretrained here")
    # The generative DBN's own error is dbn-hinton2006's record when its DBN was fine-tuned here.
    records = [record for record in records if source is None or not record["model"].startswith("dbn (")]
    for record in records:
        if record["metric"] == "test_error_pct" and record["model"].startswith("dbn-classifier"):
            record["model"] += " + dropout"
            record["reference"] = SRIVASTAVA2014
    return records
