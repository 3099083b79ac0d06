"""BENCHMARKS.md, generated from benchmarks/results/*.json (never edited by hand), and its plots.

The report has, in order: the status of every benchmark (failures shown with their error, never hidden); one
leaderboard across models with the papers' numbers beside ours; the sample-quality table (genlab-judge
metrics); links to the plots; then every benchmark's records in full. Rendering is a pure function of the
JSON documents, so the same results always give the same report.

Leaderboard matching: a record sits beside a paper's number when its model family, dataset and metric match a
:data:`PAPERS` row (see :meth:`PaperResult.matches`; e.g. model ``rbm``, dataset ``mnist``, metric
``test_loglik_nats``), or when the record carries its own ``reference={"value": ..., "source": ...}``.

The plots are drawn by :mod:`genlab.bench.report_plots`; this module holds the tables and :func:`write_report`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from genlab.bench import device_kind, load_results

PLOTS_DIRNAME = "plots"  # beside results/, i.e. benchmarks/plots/
FULL_TEST_SET = 10000  # MNIST and Fashion-MNIST test images
# Conventional names for per-model cost figures: a record field, or a sibling record's metric (same model,
# dataset and benchmark).
COST_FIGURES = {
    "train_wall_s": ("train_wall_s", "training_wall_s", "train_time_s"),
    "samples_per_s": ("samples_per_s", "sampling_samples_per_s"),
    "peak_mem_mb": ("peak_mem_mb", "peak_memory_mb", "peak_rss_mb"),
}


@dataclass(frozen=True)
class PaperResult:
    """A published number that one of our figures should be read beside."""

    label: str
    family: str  # "rbm", "dbn", "vae", "iwae", "char"
    dataset: str  # "mnist" or "tinyshakespeare"
    metric: str  # the name our benchmarks should record it under
    metric_words: tuple[str, ...]  # a matching record's metric contains one of these
    value: float
    unit: str
    higher_is_better: bool
    source: str

    def matches(self, record: dict) -> bool:
        model = str(record.get("model", "")).lower()
        metric = str(record.get("metric", "")).lower()
        dataset = str(record.get("dataset", "")).lower()
        if dataset != self.dataset:  # "mnist (threshold)" is not the papers' dynamically binarized MNIST
            return False
        if metric.startswith("train") or not any(word in metric for word in self.metric_words):
            return False
        return _family(record) == self.family and model != ""


def _family(record: dict) -> str:
    model = str(record.get("model", "")).lower()
    is_iwae = "iwae" in model or str(record.get("objective", "")).lower() == "iwae"
    if "vae" in model:
        return "iwae" if is_iwae else "vae"
    for family in ("dbn", "rbm"):
        if model.startswith(family):
            return family
    if "char" in model or "lstm" in model:
        return "char"
    return model


PAPERS: tuple[PaperResult, ...] = (
    PaperResult("RBM 500 hidden, CD-25, AIS", "rbm", "mnist", "test_loglik_nats", ("loglik", "log_likelihood"),
                -86.34, "nats (test log-lik.)", True, "Salakhutdinov & Murray 2008"),
    PaperResult("DBN 784-500-500-2000, up-down", "dbn", "mnist", "test_error_pct", ("error",), 1.25,
                "% test error", False, "Hinton, Osindero & Teh 2006"),
    PaperResult("VAE, 1 stochastic layer, k=1", "vae", "mnist", "nll_nats", ("nll",), 86.76, "nats (NLL)", False,
                "Burda, Grosse & Salakhutdinov 2015, Table 1"),
    PaperResult("IWAE k=50, 1 stochastic layer", "iwae", "mnist", "nll_nats", ("nll",), 84.78, "nats (NLL)",
                False, "Burda, Grosse & Salakhutdinov 2015, Table 1"),
    PaperResult("char-level model, val loss", "char", "tinyshakespeare", "val_loss_nats_per_char",
                ("nats_per_char", "val_loss"), 1.47, "nats/char", False,
                "nanoGPT shakespeare_char (Karpathy; 10.7M-param transformer, GPU)"),
)


def _format(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return "" if value is None else str(value)


def _cell(text) -> str:
    """Markdown table cell: no pipes or newlines inside."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _machine(document: dict) -> str:
    machine = document.get("machine", {}) or {}
    if str(document.get("device", "")).startswith("cuda") and machine.get("gpu"):
        return str(machine["gpu"])
    return f"{machine.get('cpu', '?')} ({machine.get('cores', '?')} cores)"


def _records(documents: list[dict]):
    """(document, record) for every record of every successful benchmark."""
    for document in documents:
        if document.get("status") == "ok":
            for record in document.get("records", []):
                yield document, record


def _cost(document: dict, record: dict, figure: str):
    names = COST_FIGURES[figure]
    for name in names:
        if isinstance(record.get(name), (int, float)):
            return record[name]
    for sibling in document.get("records", []):
        if (sibling.get("metric") in names and sibling.get("model") == record.get("model")
                and sibling.get("dataset") == record.get("dataset")):
            return sibling.get("value")
    return None


def _verdict(ours, paper: float, higher_is_better: bool) -> str:
    if not isinstance(ours, (int, float)) or not math.isfinite(ours):
        return ""
    gap = ours - paper
    better = gap > 0 if higher_is_better else gap < 0
    return f"{gap:+.3g} ({'better' if better else 'equal' if gap == 0 else 'worse'})"


# -------------------------------------------------------------------------------------------- sections


def _status_section(documents: list[dict]) -> list[str]:
    rows = []
    for document in documents:
        status = document.get("status")
        rows.append([document.get("benchmark"), "ok" if status == "ok" else f"**{status}**",
                     document.get("suite"), _format(document.get("wall_s")), document.get("device"),
                     _machine(document), (document.get("machine") or {}).get("torch", "?"),
                     f"`{document.get('commit')}`", document.get("timestamp")])
    lines = ["## Status", ""] + _table(["benchmark", "status", "suite", "wall s", "device", "machine", "torch",
                                        "commit", "finished (UTC)"], rows)
    for document in documents:
        if document.get("status") != "ok":
            lines.append(f"- **{document.get('benchmark')} failed:** `{_cell(document.get('error'))}` — no number "
                         f"from it is shown anywhere below; rerun `genlab bench --only {document.get('benchmark')}`")
    return lines + ([""] if lines[-1] != "" else [])


def leaderboard_rows(documents: list[dict]) -> list[dict]:
    """One entry per (paper row, matching record), per record with its own reference, and per paper row that
    nothing matched (``ours`` None, with the failed benchmarks that may explain it)."""
    entries = []
    used = set()
    for paper in PAPERS:
        matched = [(d, r) for d, r in _records(documents) if paper.matches(r)]
        for document, record in matched:
            used.add(id(record))
            entries.append(_entry(document, record, paper.value, f"{paper.source}: {paper.label}",
                                  paper.unit, paper.higher_is_better))
        if not matched:
            failed = [d["benchmark"] for d in documents
                      if d.get("status") != "ok" and _family({"model": d.get("benchmark", "")}) == paper.family]
            entries.append({"model": paper.family, "dataset": paper.dataset, "metric": paper.metric,
                            "ours": None, "failed": failed, "paper": paper.value,
                            "source": f"{paper.source}: {paper.label}", "unit": paper.unit, "verdict": ""})
    for document, record in _records(documents):
        reference = record.get("reference")
        if id(record) in used or not isinstance(reference, dict) or "value" not in reference:
            continue
        entries.append(_entry(document, record, reference["value"], reference.get("source", ""),
                              record.get("unit", ""), _higher_is_better(record, reference)))
    return entries


# Metrics where more is better, for references that do not say (results written before the flag existed).
_HIGHER_WORDS = ("recognised", "entropy", "accuracy", "auroc", "loglik", "speedup", "throughput", "per_s")


def _higher_is_better(record: dict, reference: dict) -> bool:
    """The reference's ``higher_is_better``, or, where it is absent, a guess from the metric's name."""
    if "higher_is_better" in reference:
        return bool(reference["higher_is_better"])
    metric = str(record.get("metric", "")).lower()
    return any(word in metric for word in _HIGHER_WORDS)


def metric_label(record: dict) -> str:
    """A record's metric name as shown: a likelihood measured on part of the test set says on how much."""
    metric = str(record.get("metric"))
    n_test = record.get("n_test")
    if metric.startswith("test_nll") and isinstance(n_test, (int, float)) and 0 < n_test < FULL_TEST_SET:
        return f"{metric} (first {int(n_test):,} test images)"
    return metric


def _entry(document: dict, record: dict, paper_value, source: str, unit: str, higher: bool) -> dict:
    own = record.get("reference")
    if isinstance(own, dict) and "value" in own:  # a record's own reference wins: it knows its setting best
        paper_value, source = own["value"], own.get("source", source)
    return {"model": record.get("model"), "dataset": record.get("dataset"), "metric": metric_label(record),
            "ours": record.get("value"), "stderr": record.get("stderr"), "paper": paper_value, "source": source,
            "unit": record.get("unit") or unit, "verdict": _verdict(record.get("value"), paper_value, higher),
            "train_wall_s": _cost(document, record, "train_wall_s"),
            "samples_per_s": _cost(document, record, "samples_per_s"),
            "peak_mem_mb": _cost(document, record, "peak_mem_mb"),
            "device": record.get("device", document.get("device")), "machine": _machine(document),
            "torch": (document.get("machine") or {}).get("torch", "?"),
            "commit": record.get("commit", document.get("commit")), "benchmark": document.get("benchmark")}


def _leaderboard_section(documents: list[dict]) -> list[str]:
    rows = []
    for entry in leaderboard_rows(documents):
        if entry["ours"] is None:
            why = f"benchmark failed: {', '.join(entry['failed'])}" if entry["failed"] else "not measured yet"
            ours = f"— ({why})"
            rows.append([entry["model"], entry["dataset"], entry["metric"], ours, _format(entry["paper"]),
                         entry["unit"], "", entry["source"]] + [""] * 7)
            continue
        ours = _format(entry["ours"]) + (f" ± {_format(entry['stderr'])}" if entry.get("stderr") is not None else "")
        rows.append([entry["model"], entry["dataset"], entry["metric"], ours, _format(entry["paper"]),
                     entry["unit"], entry["verdict"], entry["source"], _format(entry["train_wall_s"]),
                     _format(entry["samples_per_s"]), _format(entry["peak_mem_mb"]), entry["device"],
                     entry["machine"], entry["torch"], f"`{entry['commit']}`"])
    header = ["model", "dataset", "metric", "ours", "paper", "unit", "ours − paper", "paper source",
              "train wall s", "samples/s", "peak MB", "device", "machine", "torch", "commit"]
    return (["## Leaderboard: ours beside the papers", "",
             "Papers' numbers come from their own hardware and budgets (nanoGPT's from a GPU); ours from the "
             "machine named in the row. Test log-likelihood: higher is better; NLL, error and loss: lower is "
             "better.", ""] + _table(header, rows))


def _sample_metric_names() -> dict[str, str]:
    from genlab.bench.judge_bench import METRIC_UNITS

    return METRIC_UNITS


def sample_quality_rows(documents: list[dict]) -> list[dict]:
    """One row per (benchmark, model, dataset) with every judge metric it recorded, sorted by dataset, FD."""
    names = _sample_metric_names()
    rows: dict[tuple, dict] = {}
    for document, record in _records(documents):
        if record.get("metric") not in names:
            continue
        key = (record.get("dataset"), record.get("model"), document.get("benchmark"),
               device_kind(record.get("device") or document.get("device") or "cpu"))
        row = rows.setdefault(key, {"dataset": key[0], "model": key[1], "benchmark": key[2], "device": key[3],
                                    "images": record.get("images"), "judge": record.get("judge")})
        row[record["metric"]] = record.get("value")
        if record["metric"] == "judge_kid":
            row["judge_kid_stderr"] = record.get("stderr")
    return sorted(rows.values(), key=lambda r: (str(r["dataset"]), _sort_number(r.get("judge_fd"))))


def _sort_number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


def _sample_quality_section(documents: list[dict]) -> list[str]:
    rows = sample_quality_rows(documents)
    if not rows:
        return []
    table = []
    for row in rows:
        kid = _format(row.get("judge_kid"))
        if row.get("judge_kid_stderr") is not None:
            kid += f" ± {_format(row['judge_kid_stderr'])}"
        table.append([row["dataset"], row["model"], _format(row.get("images")),
                      _format(row.get("judge_confidence_mean")), _format(row.get("judge_confident_frac")),
                      _format(row.get("class_entropy_nats")), _format(row.get("judge_fd")), kid, row.get("judge"),
                      row["benchmark"], row["device"]])
    header = ["dataset", "images from", "n", "mean max-prob", "frac > 0.9", "class entropy (nats)", "FD", "KID ± se",
              "judge", "benchmark", "device"]
    return (["## Sample quality (genlab judge)", "",
             "Judge metrics of samples against 10,000 training images. **FD and KID use genlab's own judge "
             "features, not Inception-v3: they compare only with each other for the same dataset and judge "
             "checksum, never with published FID/KID.** \"real test images (floor)\" is what held-out real data "
             "scores; a generator below it may be copying its training set. Class entropy of a uniform "
             "10-class histogram is ln 10 = 2.303 nats. Confidence alone is no quality measure: a classifier "
             "can be confidently wrong on noise (see the uniform-noise rows), so read it with the class "
             "entropy and FD.", ""] + _table(header, table))


# The 10,000-sample leaderboard (genlab.bench.gan_bench.leaderboard_records): column -> record metric.
LEADERBOARD_10K = {"FD": "judge_fd_10k", "KID": "judge_kid_10k", "precision": "judge_precision",
                   "recall": "judge_recall", "density": "judge_density", "coverage": "judge_coverage",
                   "class entropy (nats)": "class_entropy", "frac > 0.9": "judge_confident_frac",
                   "label acc. %": "label_accuracy_pct", "NN dist. / test's": "nn_train_distance_ratio",
                   "copied": "copied_frac"}

REJECTION_PREFIX = "drs_"  # gan_bench: figures of samples drawn by discriminator rejection sampling


def leaderboard_10k_rows(documents: list[dict]) -> list[dict]:
    """One row per (benchmark, preset, device) that scored 10,000 samples, plus one real-test floor row per dataset
    (its ``real_`` records), sorted by dataset then FD."""
    metrics = set(LEADERBOARD_10K.values())
    rows: dict[tuple, dict] = {}
    for document, record in _records(documents):
        metric = str(record.get("metric", ""))
        floor = metric.startswith("real_")
        rejection = metric.startswith(REJECTION_PREFIX)  # the same model sampled through its discriminator
        name = metric.split("_", 1)[1] if floor or rejection else metric
        if name not in metrics:
            continue
        device = device_kind(record.get("device") or document.get("device") or "cpu")
        # One benchmark may score several runs (leaderboard-families: one per family), told apart by preset.
        preset = record.get("preset") or ""
        key = ((record.get("dataset"), "floor") if floor
               else (record.get("dataset"), document.get("benchmark"), preset, device, rejection))
        source = record.get("model")
        if not floor and preset and preset != document.get("benchmark"):
            source = f"{source} ({preset})"
        if rejection:
            source = f"{source} + discriminator rejection"
        row = rows.setdefault(key, {"dataset": record.get("dataset"), "floor": floor,
                                    "model": "real test images (floor)" if floor else source,
                                    "benchmark": "" if floor else document.get("benchmark"),
                                    "device": "" if floor else device, "images": record.get("images"),
                                    "train_minutes": None if floor else record.get("train_minutes"),
                                    "epochs": None if floor else record.get("epochs_trained")})
        row[name] = record.get("value")
    # Other benchmarks log some of the same names (an EBM's class_entropy) for other sample sizes: only rows with
    # the 10k FD belong here.
    scored = [row for row in rows.values() if "judge_fd_10k" in row]
    return sorted(scored, key=lambda r: (str(r["dataset"]), _sort_number(r.get("judge_fd_10k"))))


def _leaderboard_10k_section(documents: list[dict]) -> list[str]:
    rows = leaderboard_10k_rows(documents)
    if not rows:
        return []
    header = ["dataset", "images from", "benchmark", "device", "train min", "epochs", *LEADERBOARD_10K]
    table = [[row["dataset"], row["model"], row["benchmark"], row["device"], _format(row.get("train_minutes")),
              _format(row.get("epochs")), *(_format(row.get(metric)) for metric in LEADERBOARD_10K.values())]
             for row in rows]
    return (["## Which family makes the best digits for its CPU minutes (10,000 samples)", "",
             "10,000 samples of each model against 10,000 training images under genlab's judge; the floor row is "
             "10,000 real test images against the same reference. FD/KID: lower is better (genlab-judge "
             "features, not Inception). Precision and recall (k = 3, Kynkäänniemi et al. 2019), density and "
             "coverage (k = 5, Naeem et al. 2020): nearer the floor's is better. Label accuracy: the judge's "
             "agreement with the label a conditional model was asked for. Memorisation: the median distance of "
             "samples to their nearest training image over that of test images (well below 1: copies), and the "
             "fraction of samples closer to a training image than 99% of test images are.", ""]
            + _table(header, table))


def _details_section(documents: list[dict], pictures_prefix: str = "benchmarks") -> list[str]:
    lines = ["## Every benchmark in full", ""]
    for document in documents:
        kind = device_kind(document.get("device") or "cpu")
        heading = document.get("benchmark") if kind == "cpu" else f"{document.get('benchmark')} ({kind})"
        lines += [f"### {heading}", "",
                  f"status **{document.get('status')}**, suite {document.get('suite')}, "
                  f"{_format(document.get('wall_s'))} s, device {document.get('device')}, "
                  f"commit `{document.get('commit')}`, {document.get('timestamp')}; machine: {_machine(document)}, "
                  f"torch {(document.get('machine') or {}).get('torch', '?')}, python "
                  f"{(document.get('machine') or {}).get('python', '?')}", ""]
        if document.get("error"):
            lines += [f"**failed:** `{_cell(document['error'])}`", ""]
        records = document.get("records", [])
        if records:
            rows = []
            for record in records:
                reference = record.get("reference")
                reference_text = ""
                if isinstance(reference, dict):
                    reference_text = f"{_format(reference.get('value'))} ({reference.get('source', '')})"
                value = _format(record.get("value"))
                if record.get("stderr") is not None:
                    value += f" ± {_format(record['stderr'])}"
                rows.append([record.get("model"), record.get("dataset"), metric_label(record), value,
                             record.get("unit", ""), reference_text, _format(record.get("wall_s"))])
            lines += _table(["model", "dataset", "metric", "value", "unit", "reference", "wall s"], rows)
        for note in document.get("notes", []):
            lines.append(f"- {_cell(note)}")
        if document.get("notes"):
            lines.append("")
        pictures = document.get("pictures") or {}
        if isinstance(pictures, dict) and pictures:
            lines += [f"![{_cell(caption)}]({pictures_prefix}/{path})" for caption, path in pictures.items()
                      if isinstance(path, str)] + [""]
    return lines


def render(documents: list[dict], plots: dict[str, str] | None = None, pictures_prefix: str = "benchmarks") -> str:
    """The whole report as Markdown; ``plots`` maps a caption to a path relative to the report;
    ``pictures_prefix`` is the results' parent directory relative to the report (benchmarks' kept pictures
    are recorded relative to it)."""
    lines = ["# genlab benchmarks", "",
             "Generated by `genlab bench` from `benchmarks/results/*.json`; do not edit by hand "
             "(regenerate with `genlab bench`). Each record is one measured figure with its wall time, device, "
             "machine and commit. Ratios compare two things measured side by side in the same run. Likelihoods "
             "are in nats per image (higher test log-likelihood is better; lower NLL is better).", ""]
    if not documents:
        return "\n".join(lines + ["No results yet: run `genlab bench --suite quick`.", ""])
    lines += _status_section(documents)
    lines += _leaderboard_section(documents)
    lines += _leaderboard_10k_section(documents)
    lines += _sample_quality_section(documents)
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{caption}]({path})" for caption, path in plots.items()] + [""]
    lines += _details_section(documents, pictures_prefix)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(results_dir: Path, report: Path) -> Path:
    """Regenerate ``report`` (and the PNGs in ``<results_dir>/../plots/``) from the JSON files in
    ``results_dir``; a corrupt results file is a GenlabError naming it."""
    from genlab.bench.report_plots import write_plots  # imported here: it imports this module's row functions

    report = Path(report)
    documents = load_results(results_dir)
    plots_dir = Path(results_dir).parent / PLOTS_DIRNAME
    drawn = write_plots(documents, plots_dir) if documents else {}
    links = {caption: Path(os.path.relpath(path.resolve(), report.resolve().parent)).as_posix()
             for caption, path in drawn.items()}
    prefix = Path(os.path.relpath(Path(results_dir).parent.resolve(), report.resolve().parent)).as_posix()
    report.write_text(render(documents, links, prefix), encoding="utf-8")
    return report


def __getattr__(name: str):
    """``report.PLOT_FILES`` and ``report.write_plots`` still work; they live in :mod:`genlab.bench.report_plots`."""
    if name in ("PLOT_FILES", "write_plots"):
        from genlab.bench import report_plots

        return getattr(report_plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
