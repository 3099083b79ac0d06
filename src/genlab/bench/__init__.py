"""Benchmarks: named measurements that write JSON records and regenerate BENCHMARKS.md.

A benchmark is a function ``(ctx) -> list[dict]`` registered with :func:`benchmark`. Each record has at least
``model, dataset, metric, value, unit`` (the runner adds ``wall_s, device, commit``). A benchmark that raises
is recorded as failed, with its error, and never replaced by an older number.

Record conventions the report understands (:mod:`genlab.bench.report`): metric names carry their unit
(``test_loglik_nats``, ``nll_nats``, ``test_error_pct``, ``val_loss_nats_per_char``, ``bits_per_char``); an
optional ``stderr``; an optional ``reference={"value": ..., "source": ..., "higher_is_better": bool}``; cost
figures as record fields or sibling records named ``train_wall_s``, ``samples_per_s``, ``peak_mem_mb``; sample
metrics from :func:`genlab.bench.judge_bench.sample_quality_records`.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from genlab.bench import contention
from genlab.errors import ConfigError, GenlabError

SUITES = ("quick", "full")
PICTURES_DIRNAME = "pictures"  # beside results/: pictures that benchmarks keep (sample grids, manifolds)
# Benchmark modules, imported on demand; each registers its benchmarks.
BENCH_MODULES = ("genlab.bench.rbm_bench", "genlab.bench.dbn_bench", "genlab.bench.hopfield_bench",
                 "genlab.bench.vae_bench", "genlab.bench.char_bench", "genlab.bench.ebm_bench",
                 "genlab.bench.judge_bench", "genlab.bench.studio_bench",
                 "genlab.bench.gan_bench")


@dataclass(frozen=True)
class Benchmark:
    name: str
    function: Callable
    suites: tuple[str, ...]
    description: str
    resumable: bool = False  # trains for a budget and honours BenchContext.resume



@dataclass
class BenchContext:
    suite: str
    device: str
    data_dir: str | None
    work_dir: Path
    notes: list[str] = field(default_factory=list)
    # Wall-clock training budget for benchmarks that train "for N minutes"; None: each benchmark's default.
    train_budget_s: float | None = None
    # Benchmarks that train for a budget continue their newest matching run in work_dir instead of starting
    # a new one, so several budgets add up (``genlab bench --resume``).
    resume: bool = False
    # Where pictures kept with the results go (committed beside the JSON, unlike work_dir), and the ones kept:
    # {caption: path relative to pictures_dir's parent}.
    pictures_dir: Path | None = None
    pictures: dict[str, str] = field(default_factory=dict)

    def budget(self, default_s: float) -> float:
        return self.train_budget_s if self.train_budget_s else default_s

    def keep_picture(self, source: Path, name: str, caption: str) -> None:
        """Copy the picture ``source`` (e.g. a run's final sample grid) to ``pictures_dir/name`` so the report
        can show it; without a ``pictures_dir`` (or a missing source) nothing is kept."""
        import shutil

        source = Path(source)
        if self.pictures_dir is None or not source.is_file():
            return
        self.pictures_dir.mkdir(parents=True, exist_ok=True)
        kind = device_kind(self.device)
        if kind != "cpu":  # beside the CPU run's picture, as the results file is (results_filename)
            name = str(Path(name).with_name(f"{Path(name).stem}.{kind}{Path(name).suffix}"))
        shutil.copyfile(source, self.pictures_dir / name)
        self.pictures[caption] = f"{self.pictures_dir.name}/{name}"


_BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, *, suites: tuple[str, ...] = SUITES, description: str = "", resumable: bool = False):
    def decorate(function: Callable) -> Callable:
        _BENCHMARKS[name] = Benchmark(name, function, suites, description or (function.__doc__ or "").strip(),
                                      resumable)
        return function

    return decorate


def available() -> dict[str, Benchmark]:
    for module in BENCH_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return dict(sorted(_BENCHMARKS.items()))


def benchmark_group(name: str) -> str:
    """The group of a benchmark: its name up to the first '_' or '-' (``rbm`` for ``rbm_speed``)."""
    return name.replace("-", "_").split("_", 1)[0]


def select_benchmarks(known: dict[str, Benchmark], only: list[str] | None, suite: str) -> list[Benchmark]:
    """All benchmarks of ``suite`` when ``only`` is empty. Otherwise each name in ``only`` is a benchmark name
    (run whatever its suites) or a group name such as ``rbm`` (its benchmarks in ``suite``); ConfigError for
    a name that is neither, listing what exists."""
    if not only:
        return [b for b in known.values() if suite in b.suites]
    selected: dict[str, Benchmark] = {}
    unknown = []
    for name in only:
        if name in known:
            selected[name] = known[name]
            continue
        group = [b for b in known.values() if benchmark_group(b.name) == name and suite in b.suites]
        if not group:
            unknown.append(name)
        selected.update((b.name, b) for b in group)
    if unknown:
        groups = sorted({benchmark_group(name) for name in known})
        raise ConfigError(f"unknown benchmark(s) {', '.join(unknown)} for suite {suite}; available: "
                          f"{', '.join(known) or 'none'}; groups: {', '.join(groups) or 'none'}")
    return list(selected.values())


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_benchmarks(suite: str, *, only: list[str] | None, results_dir: Path, report: Path,
                   device: str = "auto", data_dir: str | None = None, train_budget_s: float | None = None,
                   resume: bool = False) -> int:
    """Run the selected benchmarks, write one JSON file each, regenerate the report. Exit code 1 if any failed."""
    import torch

    from genlab.device import resolve_device

    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; use one of {', '.join(SUITES)}")
    selected = select_benchmarks(available(), only, suite)
    if resume and not any(bench.resumable for bench in selected):
        resumable = [bench.name for bench in available().values() if bench.resumable]
        raise ConfigError(f"--resume applies to benchmarks that train for a budget ({', '.join(resumable)}); "
                          f"none of {', '.join(bench.name for bench in selected)} does")
    results_dir.mkdir(parents=True, exist_ok=True)
    resolved = str(resolve_device(device))
    commit = git_commit()
    machine = machine_info()
    failures = 0
    initial_threads = torch.get_num_threads()
    for bench in selected:
        work_dir = results_dir.parent / "work" / bench.name
        work_dir.mkdir(parents=True, exist_ok=True)
        ctx = BenchContext(suite=suite, device=resolved, data_dir=data_dir, work_dir=work_dir,
                           train_budget_s=train_budget_s, resume=resume and bench.resumable,
                           pictures_dir=results_dir.parent / PICTURES_DIRNAME)
        _warn_if_busy(bench.name)
        times_before = contention.read_cpu_times()
        started = time.perf_counter()
        print(f"[bench] {bench.name} ({suite}) ...", flush=True)
        try:
            records = bench.function(ctx)
            status, error = "ok", None
        except Exception as exc:  # recorded, never silently dropped
            records, status, error = [], "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            failures += 1
        wall = time.perf_counter() - started
        shares = contention.contention(times_before, contention.read_cpu_times(), wall, os.cpu_count() or 1)
        if contention.is_busy(shares):
            ctx.notes.append(f"While this benchmark ran, {contention.describe(shares)}: its timings, and what it "
                             f"trained in a time budget, are below this machine's undisturbed figures.")
        for record in records:
            record.setdefault("wall_s", round(wall, 2))
            record.setdefault("device", resolved)
            record.setdefault("commit", commit)
        document = {"benchmark": bench.name, "suite": suite, "status": status, "error": error,
                    "wall_s": round(wall, 2), "commit": commit, "device": resolved, "machine": machine,
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "notes": ctx.notes,
                    "pictures": ctx.pictures, "cpu_contention": shares, "records": records}
        path = results_dir / results_filename(bench.name, resolved)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        print(f"[bench] {bench.name}: {status} in {wall:.1f} s -> {path}", flush=True)
        torch.set_num_threads(initial_threads)  # a benchmark may have changed it
    from genlab.bench.report import write_report

    write_report(results_dir, report)
    print(f"[bench] wrote {report}")
    return 1 if failures else 0


def _warn_if_busy(name: str) -> None:
    """Say so before a benchmark starts on a machine where other work already takes part of the CPU."""
    shares = contention.busy_before_start()
    if contention.is_busy(shares):
        print(f"[bench] warning: in the {contention.IDLE_SAMPLE_S} s before {name} starts, "
              f"{contention.describe(shares)}; its timings, and what it trains in a time budget, will be lower. "
              f"Stop that work or rerun later.", flush=True)


def results_filename(name: str, device: str) -> str:
    """``NAME.json`` for results measured on the CPU, ``NAME.<device type>.json`` (``NAME.cuda.json``) for the
    others, so that a run on a lent GPU machine never overwrites the CPU figures and both stay in the report."""
    kind = device_kind(device)
    return f"{name}.json" if kind == "cpu" else f"{name}.{kind}.json"


def device_kind(device: str) -> str:
    """``cuda`` for ``cuda:1``: results of one kind of device share a file name and a report row."""
    return str(device).split(":", 1)[0]


def load_results(results_dir: Path) -> list[dict]:
    documents = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenlabError(f"benchmark results file {path} is corrupt ({exc}); delete it and rerun "
                              f"`genlab bench --only {path.stem}`") from None
        if not isinstance(document, dict) or "records" not in document or "benchmark" not in document:
            raise GenlabError(f"{path} is not a genlab benchmark results file; delete it and rerun the benchmark")
        documents.append(document)
    return documents
