"""The one training loop. Everything model-specific lives in ``model.loss``; everything else is a callback.

One step is a forward pass, a backward pass and an optimizer step (per phase for models with several optimizers).
Under a model's :class:`~genlab.models.base.RollbackPolicy` each forward pass is checked first
(:meth:`~genlab.models.base.GenerativeModel.step_problem`, agreed by every process): on a problem the Trainer
restores the last good snapshot (:mod:`genlab.training.rollback`), calls ``after_rollback`` and redoes the step on
the same batch, or stops with a TrainingError once ``max_recoveries`` roll-backs are spent.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.config import RunConfig
from genlab.data.datasets import DataBundle
from genlab.errors import CheckpointError, TrainingError, TrainingInterrupted
from genlab.models.base import SINGLE_OPTIMIZER, GenerativeModel
from genlab.training.distributed import DistInfo, all_ranks_agree, any_rank, gather_to_rank_zero
from genlab.training.optim import build_optimizers, load_schedule_state, make_scheduler
from genlab.training.rollback import Rollback


def rng_state() -> dict[str, Any]:
    """All random-number-generator states, as plain data that ``weights_only`` loading accepts."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [int(v) if not isinstance(v, np.ndarray) else torch.from_numpy(v.astype(np.int64))
                  for v in np.random.get_state()[1:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls and convolutions natively on this CPU (AVX512-BF16 or AMX). The probe is
    a private torch op: a torch without it (or without oneDNN) counts as no native bf16, i.e. float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def uses_bf16_autocast(amp: bool, device: torch.device, model: GenerativeModel) -> bool:
    """Whether training runs under bf16 autocast: the run asks for it (``train.amp``), the model allows it and the
    device computes bf16 natively (CUDA; a CPU with AVX512-BF16 or AMX). A CPU without them emulates bf16 (50
    DCGAN steps on the project's AVX2 EPYC, timed once by hand: 495 s vs 25 s in float32), so there the run stays
    in float32 (``train.amp`` then changes nothing)."""
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return amp and native and model.supports_amp


def training_autocast(amp: bool, device: torch.device, model: GenerativeModel):
    """The context of a training forward pass: bf16 autocast where :func:`uses_bf16_autocast`, else none."""
    if uses_bf16_autocast(amp, device, model):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    """Runs ``model.loss`` over the training batches with one optimizer (or, for models that declare several,
    each phase of :meth:`GenerativeModel.training_phases` with its own); callbacks do the rest.

    Position is (epoch, batch_in_epoch): the next batch to train on. Together with the RNG states, optimizer,
    ``model.extra_state()`` and the roll-back snapshot it is all a resumed run needs to continue exactly where a
    killed one stopped.
    """

    def __init__(self, model: GenerativeModel, config: RunConfig, data: DataBundle, *, device: torch.device,
                 dist_info: DistInfo = DistInfo(), run_dir: Path | None = None, callbacks: list | None = None):
        self.model = model
        self.config = config
        self.data = data
        self.device = device
        self.dist = dist_info
        self.run_dir = run_dir
        self.callbacks = list(callbacks or [])
        self.network: torch.nn.Module = model
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # Buffers such as persistent chains are per-rank state, not something to overwrite from rank 0.
            self.network = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
                find_unused_parameters=model.ddp_find_unused_parameters)
        self.optimizers = build_optimizers(model, config.optim)
        self.optimizer = next(iter(self.optimizers.values()))  # the one optimizer of most models
        self.phased = tuple(self.optimizers) != (SINGLE_OPTIMIZER,)
        policy = model.rollback_policy()
        self.rollback = Rollback(model, self.optimizers, policy) if policy is not None else None
        self.steps_per_epoch = len(data.train)
        if self.steps_per_epoch == 0:
            raise TrainingError(f"the training set has fewer examples ({data.train.num_examples}) than one batch "
                                f"({data.train.batch_size}) per process; lower data.batch_size")
        self.total_steps = config.train.epochs * self.steps_per_epoch
        # The schedule's horizon is the configured epochs, never max_steps, so stopping early and resuming
        # later follows the same learning-rate curve as one uninterrupted run.
        self.schedulers = {name: make_scheduler(optimizer, config.optim, self.total_steps, self.steps_per_epoch)
                           for name, optimizer in self.optimizers.items()}
        self.scheduler = next(iter(self.schedulers.values()))
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed = 0.0
        self.last_loss = math.nan
        self.last_lr = math.nan
        self.last_val: dict[str, float] = {}
        self.stop_requested = False
        self.last_checkpoint: Path | None = None  # set by the checkpoint callback: where a stopped run resumes

    # -- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        own = {"rng": rng_state(), "model_extra": self.model.extra_state()}  # this rank's
        if self.rollback is not None:
            own["rollback_extra"] = self.rollback.rank_state_dict()
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed": self.elapsed,
            **self._optimizer_state(),
            **own,
            "world_size": self.dist.world_size,
        }
        if self.rollback is not None:
            state["rollback"] = self.rollback.state_dict()
        if self.dist.enabled:
            # Every rank draws its own noise and keeps its own chains or replay buffer; a resumed run gives each
            # rank back its own (the top-level entries are rank 0's). A collective: every rank calls state_dict.
            ranks = gather_to_rank_zero(own)
            if ranks is not None:
                ranks[0] = own  # shared with the top-level entries, saved once
                state["ranks"] = ranks
        return state

    def _optimizer_state(self) -> dict[str, Any]:
        if not self.phased:  # the layout of every checkpoint written before models could declare several
            return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        return {"optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "schedulers": {name: sched.state_dict() for name, sched in self.schedulers.items()}}

    def _saved_optimizer_states(self, state: dict[str, Any]) -> dict[str, tuple[dict, dict]]:
        """(optimizer state, scheduler state) per optimizer name, from either checkpoint layout."""
        if "optimizers" in state:
            optimizers, schedulers = state["optimizers"], state.get("schedulers", {})
        else:
            optimizers, schedulers = {SINGLE_OPTIMIZER: state["optimizer"]}, {SINGLE_OPTIMIZER: state["scheduler"]}
        if set(optimizers) != set(self.optimizers) or set(schedulers) != set(self.optimizers):
            raise CheckpointError(f"the checkpoint holds optimizer(s) {', '.join(sorted(optimizers))} and this run "
                                  f"trains with {', '.join(self.optimizers)}; it was written by another model. "
                                  "Start a new run")
        return {name: (optimizers[name], schedulers[name]) for name in self.optimizers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.elapsed = float(state.get("elapsed", 0.0))
        for name, (optimizer_state, scheduler_state) in self._saved_optimizer_states(state).items():
            load_schedule_state(self.optimizers[name], self.schedulers[name], optimizer_state, scheduler_state,
                                self.config.optim, step=self.step, total_steps=self.total_steps,
                                steps_per_epoch=self.steps_per_epoch)
        own = self._own_rank_state(state)
        self.model.load_extra_state(own.get("model_extra", {}))
        if self.rollback is not None:
            self.rollback.load_state_dict(state.get("rollback"), own.get("rollback_extra"))
        set_rng_state(own["rng"])

    def _own_rank_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's random and model state from a checkpoint (rank 0's when written without DDP)."""
        written = state.get("world_size")
        if written is not None and int(written) != self.dist.world_size:
            # Each process's data shard, position in the epoch and steps per epoch depend on the process count.
            raise CheckpointError(f"this checkpoint was written by {written} training process(es) and this run has "
                                  f"{self.dist.world_size}; resume with the same number "
                                  f"(torchrun --nproc_per_node={written}, or no torchrun for 1)")
        if not self.dist.enabled:
            return state
        ranks = state.get("ranks")
        if isinstance(ranks, list) and len(ranks) == self.dist.world_size:
            return ranks[self.dist.rank]
        warnings.warn("the checkpoint was written before genlab kept each process's random and model state: every "
                      "process continues from rank 0's, so the run goes on but not as an uninterrupted one would",
                      stacklevel=2)
        return state

    # -- loop ----------------------------------------------------------------------------------------------
    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self._to_device(b) for b in batch)
        return batch

    def _autocast(self):
        return training_autocast(self.config.train.amp, self.device, self.model)

    def _apply_momentum_schedule(self) -> None:
        cfg = self.config.optim
        if cfg.final_momentum is None or cfg.name not in ("sgd", "rmsprop"):
            return
        momentum = cfg.final_momentum if self.epoch >= cfg.momentum_switch_epochs else cfg.momentum
        for group in self.optimizer.param_groups:
            group["momentum"] = momentum

    @property
    def finished(self) -> bool:
        max_steps = self.config.train.max_steps
        return self.epoch >= self.config.train.epochs or (max_steps > 0 and self.step >= max_steps)

    def _check_finite(self, value: float, what: str) -> None:
        finite = math.isfinite(value)
        if self.dist.enabled:
            finite = all_ranks_agree(finite, self.device)
        if not finite:
            raise TrainingError(
                f"the {what} became non-finite ({value:.4g}) at step {self.step + 1} (epoch {self.epoch + 1}); "
                f"training stopped; {self.checkpoint_kept()}. Lower optim.lr or enable optim.grad_clip, then "
                "resume from the run directory.")

    def checkpoint_kept(self) -> str:
        """Words for an error message: which checkpoint a stopped run can be resumed from."""
        last = self.last_checkpoint
        if last is None:
            return "no checkpoint had been written yet, so there is nothing to resume from"
        return f"the last good checkpoint, {last}, was kept"

    def train_step(self, batch: Any) -> dict[str, float]:
        """One training step on ``batch``; returns its logs. Under a roll-back policy a step that was rolled back
        is redone on the same batch from the restored state."""
        self.network.train()
        batch = self._to_device(batch)
        if self.rollback is not None:
            self.rollback.start(self.step)
        while True:
            logs = self._phased_step(batch) if self.phased else self._single_step(batch)
            if logs is not None:
                return logs

    def _single_step(self, batch: Any) -> dict[str, float] | None:
        """Forward, backward and step of the one optimizer; None when the forward pass was rolled back."""
        with self._autocast():
            loss, logs = self.network(batch)
        if self._rolled_back(SINGLE_OPTIMIZER, logs, first=True):
            return None
        value = float(loss.detach())
        self._check_finite(value, "loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # what this step used; the scheduler moves it on
        self.optimizer.step()
        self.scheduler.step()
        self.last_loss = value
        return {"loss": value, **{k: float(v) for k, v in logs.items()}}

    def _phased_step(self, batch: Any) -> dict[str, float] | None:
        """One step of a model with several optimizers: per phase a forward, a backward and that optimizer's
        step. ``loss`` is the first phase's; each phase logs ``loss_<phase>`` and ``grad_norm_<phase>``. None
        when a phase's forward pass was rolled back (which undoes the earlier phases' updates too)."""
        logs: dict[str, float] = {}
        for index, phase in enumerate(self.model.training_phases(self.step)):
            optimizer = self.optimizers[phase]
            with self._autocast():
                loss, phase_logs = self.network(batch, phase, self.step)
            if self._rolled_back(phase, phase_logs, first=index == 0):
                return None
            value = float(loss.detach())
            self._check_finite(value, f"{phase} loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            grads = [p.grad for p in parameters if p.grad is not None]
            if self.config.optim.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.optim.grad_clip)
            else:
                norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            optimizer.step()
            self.model.after_phase_step(phase)
            logs.setdefault("loss", value)
            logs[f"loss_{phase}"] = value
            logs[f"grad_norm_{phase}"] = float(norm)
            logs.update((k, float(v)) for k, v in phase_logs.items())
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():
            # Every schedule follows the trainer's step, also for an optimizer that has not stepped yet (a
            # WGAN-GP generator's first steps come after five critic steps); torch warns about that order.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for scheduler in self.schedulers.values():
                scheduler.step()
        self.last_loss = logs["loss"]
        return logs

    def _rolled_back(self, phase: str, logs: dict[str, float], first: bool) -> bool:
        """Under a roll-back policy, ask the model whether the forward pass of ``phase`` that returned ``logs``
        went wrong, on any process. Healthy: False (and the step's ``first`` forward pass may be snapshotted).
        A problem: the last good snapshot is restored on every process and True returned (the step is redone),
        or a TrainingError once out of roll-backs. Before the loss check, as a blow-up often makes it non-finite."""
        if self.rollback is None:
            return False
        problem = self.model.step_problem(phase, logs)
        if self.dist.enabled:  # all ranks roll back together, or their replicas would drift apart
            diverged = any_rank(problem is not None, self.device)
            problem = (problem or "another training process saw its model diverge") if diverged else None
        if problem is None:
            if first:
                self.rollback.passed(self.step)
            return False
        self._roll_back(problem)
        return True

    def _roll_back(self, problem: str) -> None:
        rollback, limit = self.rollback, self.rollback.policy.max_recoveries
        where = f"at step {self.step + 1} (epoch {self.epoch + 1})"
        if rollback.exhausted:
            after = f", after {rollback.recoveries} roll-back(s)" if limit else ""
            raise TrainingError(f"{problem} {where}{after}; training stopped; {self.checkpoint_kept()}. "
                                f"{rollback.policy.advice}")
        note = rollback.roll_back(problem)
        warnings.warn(f"{type(self.model).__name__}: {problem} {where}; rolled back to the state of step "
                      f"{rollback.good.step}{' ' + note if note else ''} (roll-back {rollback.recoveries}/{limit})",
                      RuntimeWarning, stacklevel=4)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if not (self.config.train.validate and self.data.val is not None):
            return {}
        was_training = self.model.training
        self.model.eval()
        # Validation must not consume training randomness, or resuming would depend on when it ran.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            logs = self.model.validate(self._to_device(b) for b in self.data.val)
        self.model.train(was_training)
        self.last_val = logs
        return logs

    def _request_stop(self, signum: int, frame: Any) -> None:
        """SIGINT / SIGTERM: finish the current step, checkpoint, stop. A second signal stops at once."""
        self.interrupted = signum
        self.stop_requested = True
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    def _catch_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread (e.g. not in the studio)
        return {signum: signal.signal(signum, self._request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}

    def fit(self) -> None:
        self.interrupted: int | None = None
        previous = self._catch_signals()
        try:
            self._fit()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self.interrupted is not None:
            name = signal.Signals(self.interrupted).name
            where = f"checkpoint {self.last_checkpoint} written" if self.last_checkpoint else "no checkpoint written"
            resume = f"; resume with: genlab train --resume {self.run_dir}" if self.run_dir is not None else ""
            raise TrainingInterrupted(f"{name} at step {self.step} (epoch {self.epoch}); {where}{resume}",
                                      128 + self.interrupted)

    def _parameter_norm(self) -> float:
        with torch.no_grad():
            squares = [p.detach().float().square().sum() for p in self.model.parameters()]
            return float(torch.stack(squares).sum().sqrt()) if squares else 0.0

    def check_parameters(self, logs: dict[str, float] | None = None) -> None:
        """TrainingError when the weights became non-finite or grew more than ``train.max_param_growth`` times
        their norm at the start of this fit, or when the model sees a divergence in the step's ``logs``
        (:meth:`GenerativeModel.divergence`, e.g. an RBM's reconstruction worse than no model): divergence that
        a finite loss does not show (lr = 1e9)."""
        norm = self._parameter_norm()
        growth = self.config.train.max_param_growth
        start = max(self._start_param_norm, 1.0)
        if not math.isfinite(norm):
            problem = "the parameters became non-finite"
        elif growth > 0 and norm > growth * start:
            problem = (f"the parameters' norm grew to {norm:.4g}, over train.max_param_growth = {growth:g} times "
                       f"its {self._start_param_norm:.4g} at the start")
        else:
            problem = self.model.divergence(logs) if logs else None
            if problem is None:
                return
        raise TrainingError(f"training diverged: {problem} at step {self.step}; training stopped; "
                            f"{self.checkpoint_kept()}. Lower optim.lr (or enable optim.grad_clip) and resume.")

    def _fit(self) -> None:
        self._start_param_norm = self._parameter_norm()
        self._emit("on_fit_start")
        try:
            while not self.finished:
                self.data.train.set_epoch(self.epoch)
                self.model.on_epoch_start(self.epoch)
                self._apply_momentum_schedule()
                self._emit("on_epoch_start")
                for batch in self.data.train.iter_from(self.batch_in_epoch):
                    started = time.perf_counter()
                    logs = self.train_step(batch)
                    self.elapsed += time.perf_counter() - started
                    self.step += 1
                    self.batch_in_epoch += 1
                    if self.batch_in_epoch >= self.steps_per_epoch:
                        self.epoch += 1
                        self.batch_in_epoch = 0
                    if self.step % self.config.train.log_every == 0:
                        self.check_parameters(logs)  # before any callback could checkpoint a diverged state
                    self._emit("on_step_end", logs)
                    if self.dist.enabled:  # one rank's stop (its wall-clock budget) stops all at the same step
                        self.stop_requested = not all_ranks_agree(not self.stop_requested, self.device)
                    if self.batch_in_epoch == 0:
                        self._emit("on_epoch_end", self.validate())
                    if self.stop_requested or self.finished:
                        break
                if self.stop_requested:
                    break
        except BaseException as exc:
            self._emit("on_fit_error", exc)
            raise
        self._emit("on_fit_end")
