"""Char-LSTM benchmarks: all-position training throughput beside the seed's predict-the-last-of-40 formulation,
streaming generation speed, and the validation loss of ``char-lstm-shakespeare`` after at most 30 minutes of
2-core CPU training, beside nanoGPT's character-level result on the same split.

Throughput counts *characters with a loss* per second: the seed (the TF.js lstm-text-generation example) reads a
window of 40 characters to score only the next one; training on every position scores all 40 for about the
same work. Both are measured on the same network, batch and windows, alternating in rounds so that load on a
shared machine falls on both alike.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.bench import BenchContext, benchmark
from genlab.errors import ConfigError
from genlab.models.char_rnn import CharLSTM, CharLSTMConfig
from genlab.training.callbacks import WallClockBudget

NANOGPT_CHAR = {"value": 1.47, "source": "nanoGPT shakespeare-char val loss (GPU transformer, nats/char)",
                "higher_is_better": False}
THROUGHPUT_TARGET = {"value": 30.0, "source": "target: >= 30x", "higher_is_better": True}
GENERATION_TARGET = {"value": 1000.0, "source": "target: >= 1000 chars/s", "higher_is_better": True}
VAL_TARGET_NATS = NANOGPT_CHAR["value"]  # the target: nanoGPT's GPU figure in 30 minutes of 2-core CPU training
# The seed's settings: --lstmLayerSize 128,128, --sampleLen 40, --batchSize 128.
SEED_LAYERS, SEED_WINDOW, SEED_BATCH = (128, 128), 40, 128
FULL_BUDGET_S = 30 * 60
FORMULATIONS = ("all", "last")


def shakespeare_ids(data_dir: str | None) -> tuple[Tensor, str]:
    """The training part of tinyshakespeare as ids, and its vocabulary."""
    from genlab.data.text import CharVocab, load_corpus, split_corpus

    train_text, _ = split_corpus(load_corpus("tinyshakespeare", data_dir=data_dir), 0.1)
    vocab = CharVocab.from_text(train_text)
    return vocab.encode(train_text), vocab.chars


def random_windows(ids: Tensor, count: int, width: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` random windows of ``width`` inputs and their next-character targets, each (count, width)."""
    starts = torch.randint(len(ids) - width, (count,), generator=generator)
    index = starts[:, None] + torch.arange(width + 1)[None, :]
    rows = ids[index]
    return rows[:, :-1], rows[:, 1:]


def _formulation_loss(model: CharLSTM, x: Tensor, y: Tensor, formulation: str) -> tuple[Tensor, int]:
    """The training loss and how many characters it scores."""
    if formulation == "all":
        loss, _ = model.loss((x, y))
        return loss, y.numel()
    # The seed: the network reads the whole window, only the last position reaches the softmax.
    features, _ = model.hidden(x, dropout=True)
    return F.cross_entropy(model.head(features[:, -1]), y[:, -1]), y.shape[0]


def training_throughput(model: CharLSTM, ids: Tensor, *, formulation: str, seq_len: int, batch_size: int,
                        steps: int | None = None, seconds: float | None = None, seed: int = 0) -> dict[str, float]:
    """Adam training steps on random windows; ``chars_per_s`` counts characters that carry a loss per second of
    wall time, ``chars_per_cpu_s`` per second of this process's CPU time (steadier on a shared machine).

    Runs ``steps`` timed steps, or as many as fit in ``seconds``, after one untimed warm-up step.
    """
    if formulation not in FORMULATIONS:
        raise ConfigError(f"formulation must be one of {', '.join(FORMULATIONS)}, got {formulation!r}")
    if (steps is None) == (seconds is None):
        raise ConfigError("give exactly one of steps or seconds")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def one_step() -> int:
        x, y = random_windows(ids, batch_size, seq_len, generator)
        loss, scored = _formulation_loss(model, x, y, formulation)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return scored

    one_step()
    chars, done, started, cpu_started = 0, 0, time.perf_counter(), time.process_time()
    while (steps is not None and done < steps) or (seconds is not None and time.perf_counter() - started < seconds):
        chars += one_step()
        done += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"chars": chars, "steps": done, "seconds": elapsed, "chars_per_s": chars / elapsed,
            "chars_per_cpu_s": chars / max(cpu, 1e-9)}


def generation_speed(model: CharLSTM, *, length: int, prompt: str, temperature: float = 1.0,
                     seed: int = 0) -> dict[str, float]:
    """Characters per second of :meth:`CharLSTM.stream` after ``prompt``, the prompt's reading included."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    chars = sum(1 for _ in model.stream(prompt=prompt, length=length, temperature=temperature, generator=generator))
    elapsed = time.perf_counter() - started
    return {"chars": chars, "seconds": elapsed, "chars_per_s": chars / elapsed}


@benchmark("char-throughput", suites=("quick", "full"),
           description="characters with a loss per second: all positions vs the seed's last-of-40, 2x128 LSTM")
def char_throughput(ctx: BenchContext) -> list[dict]:
    ids, vocab = shakespeare_ids(ctx.data_dir)
    torch.manual_seed(0)
    network = CharLSTM(CharLSTMConfig(layers=SEED_LAYERS, embedding_dim=64, vocab=vocab))
    rounds, seconds = 5, 3.0
    rates: dict[str, list[float]] = {name: [] for name in FORMULATIONS}
    cpu_rates: dict[str, list[float]] = {name: [] for name in FORMULATIONS}
    for round_index in range(rounds):
        for formulation in FORMULATIONS:
            model = copy.deepcopy(network)  # same weights and size for both, fresh optimizer each round
            result = training_throughput(model, ids, formulation=formulation, seq_len=SEED_WINDOW,
                                         batch_size=SEED_BATCH, seconds=seconds, seed=round_index)
            rates[formulation].append(result["chars_per_s"])
            cpu_rates[formulation].append(result["chars_per_cpu_s"])
    all_rate, last_rate = statistics.median(rates["all"]), statistics.median(rates["last"])
    cpu_ratio = statistics.median(cpu_rates["all"]) / statistics.median(cpu_rates["last"])
    ctx.notes.append(f"char-throughput: LSTM {SEED_LAYERS}, embedding 64, batch {SEED_BATCH}, windows of "
                     f"{SEED_WINDOW}, Adam, torch threads {torch.get_num_threads()}; median of {rounds} alternating "
                     f"rounds of {seconds:g} s per formulation; the same ratio in CPU time: {cpu_ratio:.1f}x "
                     f"(the ideal is {SEED_WINDOW}x less the softmax on every position)")
    common = {"model": "char-lstm 2x128", "dataset": "tinyshakespeare"}
    return [
        {**common, "metric": "train_chars_per_s_all_positions", "value": round(all_rate, 1), "unit": "chars/s"},
        {**common, "metric": "train_chars_per_s_seed_last_of_40", "value": round(last_rate, 1), "unit": "chars/s"},
        {**common, "metric": "throughput_ratio_all_vs_seed", "value": round(all_rate / last_rate, 2), "unit": "x",
         "reference": THROUGHPUT_TARGET},
    ]


@benchmark("char-generation", suites=("quick", "full"),
           description="streaming generation speed of a 2x256 char-LSTM on CPU (incremental state)")
def char_generation(ctx: BenchContext) -> list[dict]:
    _, vocab = shakespeare_ids(ctx.data_dir)
    torch.manual_seed(0)
    model = CharLSTM(CharLSTMConfig(layers=(256, 256), embedding_dim=64, vocab=vocab))
    torch.set_num_threads(1)  # one character at a time: more threads only add synchronisation
    generation_speed(model, length=50, prompt="ROMEO:")  # warm-up
    runs = [generation_speed(model, length=2000, prompt="ROMEO:\n", seed=seed)["chars_per_s"] for seed in range(3)]
    ctx.notes.append("char-generation: LSTM (256, 256), embedding 64, batch 1, temperature 1, 2000 characters after "
                     "a 7-character prompt, 1 torch thread, median of 3; random weights (speed does not depend on "
                     "them)")
    return [{"model": "char-lstm 2x256", "dataset": "tinyshakespeare", "metric": "generation_chars_per_s",
             "value": round(statistics.median(runs), 1), "unit": "chars/s", "reference": GENERATION_TARGET}]


def calibrated_epochs(seconds_per_step: float, steps_per_epoch: int, budget_s: float, *,
                      overhead: float = 0.08) -> int:
    """Whole epochs that fit in ``budget_s`` at ``seconds_per_step``, leaving ``overhead`` for validation, samples
    and checkpoints; at least 1 (the time budget then cuts the run)."""
    return max(1, int(budget_s * (1.0 - overhead) / (seconds_per_step * steps_per_epoch)))


def train_with_budget(config, budget_s: float, *, calibrate_steps: int = 20) -> dict[str, Any]:
    """Train ``config`` for at most ``budget_s`` seconds, choosing the epochs from a short timing of the real model
    so that the learning-rate schedule completes in the budget; then evaluate the whole validation split."""
    from genlab.config import dump_yaml
    from genlab.data.datasets import build_data
    from genlab.device import resolve_device
    from genlab.training.callbacks import default_callbacks
    from genlab.training.run import build_model, new_run_dir
    from genlab.training.optim import build_optimizer
    from genlab.training.trainer import Trainer, seed_everything, training_autocast

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)
    data = build_data(config.data, seed=config.train.seed)
    seed_everything(config.train.seed)
    model, config = build_model(config, data)

    # Time a few optimizer steps on a throwaway copy (same shapes, same batches as the run).
    probe = copy.deepcopy(model).to(device).train()
    optimizer = build_optimizer(probe, config.optim)
    batches = data.train.iter_from(0)
    started = None
    for index in range(calibrate_steps + 2):
        if index == 2:
            started = time.perf_counter()  # two warm-up steps
        x, y = next(batches)
        with training_autocast(config.train.amp, device, probe):  # as the Trainer will run it
            loss, _ = probe.loss((x.to(device), y.to(device)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds_per_step = (time.perf_counter() - started) / calibrate_steps
    del probe, optimizer
    epochs = calibrated_epochs(seconds_per_step, len(data.train), budget_s)
    config = replace(config, train=replace(config.train, epochs=epochs))

    seed_everything(config.train.seed)
    model.init_from_data(data.train)
    model.to(device)
    run_dir = new_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
    budget = WallClockBudget(budget_s)
    callbacks = default_callbacks(run_dir, config.train, True) + [budget]
    trainer = Trainer(model, config, data, device=device, run_dir=run_dir, callbacks=callbacks)
    seed_everything(config.train.seed)
    fit_started = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - fit_started
    model.eval()
    eval_started = time.perf_counter()
    metrics = model.evaluate((x.to(device), y.to(device)) for x, y in data.val)
    return {"run_dir": run_dir, "epochs": epochs, "steps": trainer.step, "steps_per_epoch": len(data.train),
            "seconds_per_step": seconds_per_step, "train_s": train_s, "eval_s": time.perf_counter() - eval_started,
            "stopped_early": budget.stopped_early, "chars_trained": trainer.step * data.train.batch_size *
            config.data.seq_len, **metrics}


@benchmark("char-lstm-shakespeare", suites=("full",),
           description="validation nats/char of char-lstm-shakespeare after <= 30 min of 2-core CPU training")
def char_shakespeare(ctx: BenchContext) -> list[dict]:
    from genlab.config import compose_run_config

    overrides = [f"train.device={ctx.device}", "train.progress=false", f"train.out_dir={ctx.work_dir}",
                 f"train.threads={torch.get_num_threads()}"]
    if ctx.data_dir:
        overrides.append(f"data.data_dir={ctx.data_dir}")
    config = compose_run_config(preset="char-lstm-shakespeare", overrides=overrides)
    budget_s = ctx.budget(FULL_BUDGET_S)
    result = train_with_budget(config, budget_s)
    ctx.notes.append(
        f"char-lstm-shakespeare: {result['epochs']} epochs chosen from a timing of {result['seconds_per_step']:.3f} "
        f"s/step ({result['steps_per_epoch']} steps/epoch); trained {result['steps']} steps, "
        f"{result['chars_trained']:,} characters in {result['train_s']:.0f} s on {config.train.threads} thread(s)"
        f"{' (stopped by the time budget)' if result['stopped_early'] else ''}; validation over all "
        f"{int(result['val_chars']):,} validation characters ({config.model.eval_context} context, "
        f"{config.model.eval_streams} streams) in {result['eval_s']:.0f} s; target <= {VAL_TARGET_NATS} nats/char; "
        f"run {result['run_dir']}")
    common = {"model": "char-lstm-shakespeare", "dataset": "tinyshakespeare"}
    return [
        {**common, "metric": "val_loss_nats_per_char", "value": round(result["val_nats_per_char"], 4),
         "unit": "nats/char", "reference": NANOGPT_CHAR},
        {**common, "metric": "val_loss_bits_per_char", "value": round(result["val_bits_per_char"], 4),
         "unit": "bits/char", "reference": {"value": round(NANOGPT_CHAR["value"] / math.log(2), 4),
                                             "source": NANOGPT_CHAR["source"].replace("nats", "bits"),
                                             "higher_is_better": False}},
        {**common, "metric": "train_wall_s", "value": round(result["train_s"], 1), "unit": "s",
         "reference": {"value": FULL_BUDGET_S, "source": "target budget: 30 min, 2 threads",
                       "higher_is_better": False}},
    ]
