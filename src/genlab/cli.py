"""The ``genlab`` command line: list, train, sample, eval, plot, bench, serve.

Every user mistake ends as one line on stderr and exit code 2; a training run stopped on purpose (e.g. a
non-finite loss) exits with 1; one stopped by Ctrl-C or SIGTERM writes a checkpoint and exits with 130 or 143.
No traceback is shown for any of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from genlab.errors import ConfigError, GenlabError, TrainingError, TrainingInterrupted


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every error goes through one handler."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    from genlab.config import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2^63), got {value}")
    return value


MAX_GRID_IMAGES = 10_000  # a PNG grid of more is unreadable (and 10^8 images would need hundreds of GB)
MAX_ARRAY_IMAGES = 200_000  # about 160 MB of uint8 28x28 images, sampled 10,000 at a time
MAX_TEXT_SAMPLES = 1000


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genlab", description="Train, sample, evaluate and compare classic generative models.")
    parser.add_argument("--version", action="store_true", help="print genlab's version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    commands.add_parser("list", help="list models, presets and datasets")

    train = commands.add_parser("train", help="train a model (or resume a run)")
    train.add_argument("model", nargs="?", help="model name from `genlab list` (omit with --resume)")
    train.add_argument("--dataset", help="mnist, fashion-mnist, tinyshakespeare, or a .npy/.npz/.txt path")
    train.add_argument("--preset", help="a preset name from `genlab list` or a YAML file")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--seed", type=_seed)
    train.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--data-dir", help="where the datasets are (default: $GENLAB_DATA, cache, download)")
    train.add_argument("--out", help="parent directory of run directories (default: runs)")
    train.add_argument("--resume", metavar="RUN", help="continue a run directory from its last checkpoint")

    sample = commands.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run", help="run directory (or a checkpoint directory)")
    sample.add_argument("--n", type=_positive_int, help="number of samples (default: 64 images, 1 text)")
    sample.add_argument("--out", help="a .png grid (default RUN/samples/sample.png), or uint8 arrays in .npz "
                                      "(key images, and labels) or .npy; text: a UTF-8 .txt file")
    sample.add_argument("--seed", type=_seed, default=0)
    sample.add_argument("--device", default="auto")
    sample.add_argument("--steps", type=_positive_int, help="sampler steps (Gibbs / Langevin)")
    sample.add_argument("--label", type=int, help="class label to clamp (DBN) or to condition on (cgan, acgan)")
    sample.add_argument("--rejection", type=float, metavar="PERCENTILE",
                        help="GANs with a logistic-loss discriminator: keep the samples it scores most real "
                             "(discriminator rejection sampling, Azadi et al. 2019; 95 is the paper's)")
    sample.add_argument("--interpolate", action="store_true",
                        help="GANs: a strip and a GIF of --steps images (default 10) along a slerp between two z")
    sample.add_argument("--label-gain", dest="label_gain", type=float,
                        help="DBN: value of the clamped label unit (default 1, the model's own conditional; "
                             "> 1 pulls harder towards the label)")
    sample.add_argument("--prompt", help="text prompt (char-LSTM)")
    sample.add_argument("--length", type=_positive_int, help="characters to generate (char-LSTM)")
    sample.add_argument("--temperature", type=float, help="sampling temperature; 0 means argmax")
    sample.add_argument("--top-k", dest="top_k", type=int, help="sample from the k most likely characters")
    sample.add_argument("--unknown", choices=("error", "skip", "replace"),
                        help="prompt characters outside the vocabulary: error (default), skip or replace (char-LSTM)")

    evaluate = commands.add_parser("eval", help="test metrics of a trained run")
    evaluate.add_argument("run")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--seed", type=_seed, default=0)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                          help="model-specific evaluation option, e.g. --option ais_runs=100 (repeatable)")

    latent = commands.add_parser("latent", help="a VAE run's latent space: manifold, scatter, interpolations")
    latent.add_argument("run", help="VAE run directory (or checkpoint directory)")
    latent.add_argument("--out", help="output directory (default RUN/latent)")
    latent.add_argument("--size", type=_positive_int, help="manifold cells per side (default: the config's)")
    latent.add_argument("--bounds", type=float, nargs=2, metavar=("LO", "HI"),
                        help="manifold z range (default: the config's, e.g. -4 4)")
    latent.add_argument("--spacing", choices=("linear", "gaussian"), help="manifold spacing (default: config's)")
    latent.add_argument("--limit", type=int, default=5000, help="test images in the scatter (0: all)")
    latent.add_argument("--pairs", type=_positive_int, default=8, help="interpolation rows")
    latent.add_argument("--steps", type=_positive_int, default=10, help="images per interpolation row")
    latent.add_argument("--device", default="auto")
    latent.add_argument("--data-dir", help="where the datasets are (default: the run's setting / $GENLAB_DATA)")

    plot = commands.add_parser("plot", help="draw a run's training curves to PNG")
    plot.add_argument("run")
    plot.add_argument("--out", help="output PNG (default RUN/curves.png)")

    bench = commands.add_parser("bench", help="run benchmarks and regenerate BENCHMARKS.md")
    bench.add_argument("--suite", default="quick", help="quick or full")
    bench.add_argument("--only", help="comma-separated benchmark names")
    bench.add_argument("--results", default="benchmarks/results", help="directory for JSON results")
    bench.add_argument("--report", default="BENCHMARKS.md")
    bench.add_argument("--budget-minutes", dest="budget_minutes", type=float,
                       help="wall-clock training budget for benchmarks that train for a time (default: theirs)")
    bench.add_argument("--resume", action="store_true",
                       help="benchmarks that train for a time continue their newest matching run in "
                            "benchmarks/work/ (so budgets add up) instead of starting a new one")

    _add_judge_parser(commands)

    serve = commands.add_parser("serve", help="open the studio: a local web page to explore runs and models")
    serve.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                       help="directory holding run directories (default: runs)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: only this machine can connect)")
    serve.add_argument("--port", type=_positive_int, default=8765)
    serve.add_argument("--device", default="cpu", help="where models run: cpu (default), auto, cuda, mps")
    serve.add_argument("--cache-size", dest="cache_size", type=_positive_int, default=4,
                       help="loaded models kept in memory (least recently used are dropped)")
    serve.add_argument("--threads", type=_positive_int, default=1,
                       help="torch threads per request (default 1: requests already run in parallel)")
    return parser


def _cmd_list(args) -> int:
    from genlab import registry
    from genlab.preset_files import preset_names

    print("models:")
    for entry in registry.entries():
        print(f"  {entry.name:<12} {entry.description} (default dataset: {entry.default_dataset})")
    print("presets:")
    for name in preset_names():
        print(f"  {name}")
    print("datasets: mnist, fashion-mnist, tinyshakespeare, or a path to .npy/.npz images or a UTF-8 text file")
    return 0


def _train_config(args):
    from genlab.config import compose_run_config

    base = None
    if args.resume:
        from genlab.training.run import resume_config

        base = resume_config(Path(args.resume))
        if args.model and args.model != base.get("model_name"):
            raise ConfigError(f"--resume {args.resume} is a {base.get('model_name')} run, not {args.model}")
    elif not args.model:
        raise ConfigError("genlab train: name a model (see `genlab list`) or pass --resume RUN")
    flags = {"data.dataset": args.dataset, "data.data_dir": args.data_dir, "train.epochs": args.epochs,
             "train.seed": args.seed, "train.device": args.device, "train.out_dir": args.out}
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None] + args.overrides
    return compose_run_config(args.model, preset=args.preset, overrides=overrides, base=base)


def _cmd_train(args) -> int:
    from genlab.api import run_training

    run = run_training(_train_config(args), resume_dir=Path(args.resume) if args.resume else None)
    if run is not None:  # None on the other ranks of a torchrun run: rank 0 writes the run directory
        print(f"run directory: {run.path}")
    return 0


def _load(run: str, device: str):
    from genlab.device import resolve_device
    from genlab.training.checkpoint import load_model

    return load_model(Path(run), resolve_device(device))


def _cmd_sample(args) -> int:
    import torch

    from genlab.viz.arrays import ARRAY_SUFFIXES, save_arrays
    from genlab.image_files import save_grid

    model, config = _load(args.run, args.device)
    if args.interpolate:
        return _interpolate(model, config, args)
    options = {k: v for k, v in (("steps", args.steps), ("label", args.label),
                                 ("label_gain", args.label_gain), ("prompt", args.prompt),
                                 ("length", args.length), ("temperature", args.temperature),
                                 ("top_k", args.top_k), ("unknown", args.unknown),
                                 ("rejection", args.rejection)) if v is not None}
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    if hasattr(model, "stream"):
        return _sample_text(model, generator, options, args)
    out = Path(args.out) if args.out else Path(args.run) / "samples" / "sample.png"
    suffix = out.suffix.lower()
    if out.is_dir() or suffix not in (".png", *ARRAY_SUFFIXES):
        raise ConfigError(f"--out {out}: images are written as a .png grid, or as uint8 arrays in .npz (with "
                          f"labels) or .npy; name such a file")
    n = args.n or 64
    limit = MAX_GRID_IMAGES if suffix == ".png" else MAX_ARRAY_IMAGES
    if n > limit:
        raise ConfigError(f"--n {n}: a {'grid' if suffix == '.png' else 'sample file'} holds at most {limit} "
                          f"images; draw fewer (or several files with different --seed)")
    from genlab.training.checkpoint import samples_value_range

    value_range = samples_value_range(Path(args.run), config)
    if suffix == ".png":
        with torch.no_grad():
            images = model.sample(n, generator=generator, **options)
        save_grid(images, out, value_range=value_range)
    else:
        images, labels = _sample_arrays(model, n, generator, options, value_range)
        save_arrays(out, images, labels)
    print(f"wrote {len(images)} samples to {out}")
    return 0


def _sample_arrays(model, n: int, generator, options: dict, value_range) -> tuple:
    """n images as uint8, drawn in chunks of at most MAX_GRID_IMAGES (the first chunk is what a PNG of that many
    shows), with the labels they were drawn for (a clamped --label, a conditional GAN's classes) or None."""
    import numpy as np
    import torch

    from genlab.viz.arrays import to_uint8

    chunks, labels = [], []
    for start in range(0, n, MAX_GRID_IMAGES):
        size = min(MAX_GRID_IMAGES, n - start)
        with torch.no_grad():
            chunks.append(to_uint8(model.sample(size, generator=generator, **options), value_range))
        drawn_for = model.labels_for(size, options.get("label")) if hasattr(model, "labels_for") else None
        if drawn_for is None and options.get("label") is not None:
            drawn_for = torch.full((size,), int(options["label"]))
        if drawn_for is not None:
            labels.append(drawn_for.cpu().numpy().astype(np.int64))
    return np.concatenate(chunks), (np.concatenate(labels) if labels else None)


def _sample_text(model, generator, options: dict, args) -> int:
    """Text to stdout as it is generated, or --n texts to a UTF-8 .txt file (separated by blank lines)."""
    if args.out is None:
        for piece in model.stream(generator=generator, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    out = Path(args.out)
    if out.is_dir() or out.suffix.lower() != ".txt":
        raise ConfigError(f"--out {out}: generated text is written as UTF-8 to a .txt file; name one")
    n = args.n or 1
    if n > MAX_TEXT_SAMPLES:
        raise ConfigError(f"--n {n}: at most {MAX_TEXT_SAMPLES} texts per file")
    texts = ["".join(model.stream(generator=generator, **options)) for _ in range(n)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    print(f"wrote {n} text sample(s) to {out}")
    return 0


def _interpolate(model, config, args) -> int:
    """``genlab sample RUN --interpolate``: --steps images along a slerp between two z, as a strip and a GIF."""
    import torch
    from PIL import Image

    from genlab.image_files import make_grid, save_gif, save_grid

    if not hasattr(model, "interpolate"):
        raise ConfigError(f"--interpolate applies to GANs; {config.model_name} has no latent path to draw")
    if args.rejection is not None:
        raise ConfigError("--rejection chooses among independent samples; a path between two z has none to drop: "
                          "use it without --interpolate")
    out = Path(args.out) if args.out else Path(args.run) / "samples" / "interpolation.png"
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: an interpolation is written as a .png strip (and a .gif beside it)")
    steps = args.steps or 10
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    with torch.no_grad():
        frames = model.interpolate(steps, generator=generator, label=args.label)
    value_range = tuple(config.model.value_range)
    save_grid(frames, out, value_range=value_range, ncol=steps)
    gif = out.with_suffix(".gif")
    save_gif([Image.fromarray(make_grid(frame[None], value_range=value_range, padding=0)).resize(
        (4 * frame.shape[-1], 4 * frame.shape[-2]), Image.NEAREST) for frame in frames], gif, duration_ms=150)
    print(f"wrote {steps} interpolation frames to {out} and {gif}")
    return 0


def _parse_options(pairs: list[str]) -> dict:
    from genlab.config import parse_override

    options = {}
    for text in pairs:
        parts, value = parse_override(text)
        options["_".join(parts)] = value
    return options


def _cmd_eval(args) -> int:
    from genlab.api import evaluate
    from genlab.training.callbacks import json_safe

    metrics = evaluate(args.run, seed=args.seed, device=args.device, data_dir=args.data_dir,
                       **_parse_options(args.options))
    if args.json:
        print(json.dumps(json_safe(metrics)))
    else:
        for key, value in metrics.items():
            print(f"{key:<28} {value:.6g}" if isinstance(value, float) else f"{key:<28} {value}")
    return 0


def _cmd_latent(args) -> int:
    from genlab.api import latent_pictures

    written = latent_pictures(args.run, out_dir=args.out, size=args.size, bounds=args.bounds, spacing=args.spacing,
                              limit=args.limit, pairs=args.pairs, steps=args.steps, device=args.device,
                              data_dir=args.data_dir)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _cmd_plot(args) -> int:
    from genlab.viz.plots import plot_metrics

    run_dir = Path(args.run)
    out = plot_metrics(run_dir / "metrics.jsonl", Path(args.out) if args.out else run_dir / "curves.png")
    print(f"wrote {out}")
    return 0


def _cmd_bench(args) -> int:
    from genlab.bench import run_benchmarks

    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise ConfigError(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    budget_s = args.budget_minutes * 60 if args.budget_minutes else None
    return run_benchmarks(args.suite, only=only, results_dir=Path(args.results), report=Path(args.report),
                          train_budget_s=budget_s, resume=args.resume)


def _cmd_serve(args) -> int:
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"genlab serve needs the studio extra ({', '.join(missing)} not installed): "
                          'pip install -e ".[studio]"')
    from genlab.device import resolve_device
    from genlab.studio import serve

    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        raise ConfigError(f"runs directory {runs_dir} does not exist; train a model first (genlab train ...) "
                          "or pass the directory that holds your runs")
    device = str(resolve_device(args.device))
    print(f"genlab studio: http://{args.host}:{args.port}/  (runs: {runs_dir.resolve()}, device: {device}; "
          "Ctrl+C stops it)", flush=True)
    serve(runs_dir, host=args.host, port=args.port, device=device, cache_size=args.cache_size,
          threads=args.threads)
    return 0


def _add_judge_parser(commands) -> None:
    judge = commands.add_parser("judge", help="genlab's judge classifiers: train them, score images with them")
    actions = judge.add_subparsers(dest="judge_action", metavar="ACTION", parser_class=_Parser)
    train = actions.add_parser("train", help="train (or retrain) the judge of a dataset and cache it")
    score = actions.add_parser("score", help="judge metrics (confidence, class entropy, FD, KID) of images")
    score.add_argument("source", help="a .npy/.npz file of images, or a run directory to sample from")
    score.add_argument("--n", type=_positive_int, default=1000, help="samples to draw from a run")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--value-range", dest="value_range", help="LOW,HIGH of the images' values, e.g. -1,1")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.add_argument("--reference-size", dest="reference_size", type=_positive_int, default=10000,
                       help="training images the samples are compared with (default 10000)")
    train.add_argument("--epochs", type=_positive_int, help="default: 4 for mnist, 7 for fashion-mnist")
    train.add_argument("--seed", type=int, default=0)
    for action in (train, score):
        action.add_argument("--dataset", help="mnist or fashion-mnist (score: default the run's dataset)")
        action.add_argument("--data-dir", help="where the datasets are (default: $GENLAB_DATA, cache, download)")
        action.add_argument("--cache-dir", help="judge cache (default: $GENLAB_JUDGE_DIR or "
                                                "~/.cache/genlab/judges)")
        action.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or mps")


def _cmd_judge(args) -> int:
    from genlab.device import resolve_device
    from genlab.eval import judge as judge_lib
    from genlab.eval.judge_training import train_judge

    if args.judge_action is None:
        raise ConfigError("genlab judge: name an action: train or score")
    device = resolve_device(args.device)
    if args.judge_action == "train":
        if not args.dataset:
            raise ConfigError(f"genlab judge train: pass --dataset ({' or '.join(judge_lib.JUDGE_DATASETS)})")
        judge = train_judge(args.dataset, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                            cache_dir=args.cache_dir, device=device)
        if not judge.info.meets_target:
            target = judge_lib.TARGET_ACCURACY_PCT[judge.info.dataset]
            print(f"warning: the {judge.info.dataset} judge is below its {target}% target; retrain with more --epochs")
        return 0
    from genlab.judge import score_source

    quality = score_source(args.source, dataset=args.dataset, n=args.n, seed=args.seed,
                           value_range=args.value_range, reference_size=args.reference_size,
                           data_dir=args.data_dir, cache_dir=args.cache_dir, device=device)
    result = quality.summary()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<24} {value:.6g}" if isinstance(value, float) else f"{key:<24} {value}")
        print("FD/KID use genlab's judge features: compare them only with other genlab-judge numbers.")
    return 0


COMMANDS = {"list": _cmd_list, "train": _cmd_train, "sample": _cmd_sample, "eval": _cmd_eval,
            "plot": _cmd_plot, "latent": _cmd_latent, "bench": _cmd_bench, "serve": _cmd_serve, "judge": _cmd_judge}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            from genlab import __version__

            print(f"genlab {__version__}")
            return 0
        if not args.command:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(f"genlab: interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingError as exc:
        print(f"genlab: stopped: {exc}", file=sys.stderr)
        return 1
    except GenlabError as exc:
        print(f"genlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genlab: interrupted", file=sys.stderr)
        return 130
