"""The benchmark runner and BENCHMARKS.md: bad names are clear errors, failures are recorded and shown (never
replaced by an old number), and the report is regenerated from the JSON files alone."""

import json
from pathlib import Path

import pytest

import genlab.bench as bench
from genlab.bench import Benchmark, report
from genlab.errors import ConfigError, GenlabError


def _rbm_loglik(ctx):
    return [{"model": "rbm", "dataset": "mnist", "metric": "test_loglik_nats", "value": -88.5, "unit": "nats",
             "stderr": 0.2, "train_wall_s": 812.0, "peak_mem_mb": 350.0},
            {"model": "rbm", "dataset": "mnist", "metric": "samples_per_s", "value": 1234.0, "unit": "1/s"}]


def _broken(ctx):
    raise RuntimeError("chains diverged at step 7")


def _samples(ctx):
    common = {"dataset": "mnist", "images": 1000, "judge": "mnist-abc"}
    return [{**common, "model": "ebm", "metric": "judge_fd", "value": 12.5, "unit": "FD (genlab judge)"},
            {**common, "model": "ebm", "metric": "judge_kid", "value": 0.9, "stderr": 0.1, "unit": "KID"},
            {**common, "model": "ebm", "metric": "class_entropy_nats", "value": 2.25, "unit": "nats"},
            {**common, "model": "real test images (floor)", "metric": "judge_fd", "value": 1.5, "unit": "FD"}]


def _gan_leaderboard(ctx):
    common = {"dataset": "mnist", "images": 10000, "train_minutes": 25.5, "epochs_trained": 9.4}
    records = []
    for prefix, fd, recall in (("", 116.8, 0.68), ("real_", 2.8, 0.86), ("drs_", 61.0, 0.55)):
        records += [{**common, "model": "dcgan", "metric": prefix + "judge_fd_10k", "value": fd, "unit": "FD"},
                    {**common, "model": "dcgan", "metric": prefix + "judge_recall", "value": recall, "unit": "f"}]
    return records + [{**common, "model": "dcgan", "metric": "label_accuracy_pct", "value": 97.5, "unit": "%"}]


FAKES = {
    "rbm_fake_loglik": Benchmark("rbm_fake_loglik", _rbm_loglik, ("quick", "full"), "fake"),
    "dbn_fake_broken": Benchmark("dbn_fake_broken", _broken, ("full",), "fake"),
    "ebm_fake_samples": Benchmark("ebm_fake_samples", _samples, ("quick",), "fake"),
}


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setattr(bench, "available", lambda: dict(FAKES))
    monkeypatch.setattr(bench, "git_commit", lambda: "abc123def456")


def _run(tmp_path, suite="quick", only=None):
    results = tmp_path / "benchmarks" / "results"
    code = bench.run_benchmarks(suite, only=only, results_dir=results, report=tmp_path / "BENCHMARKS.md",
                                device="cpu")
    return code, results, (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")


def test_the_real_registry_has_the_judge_benchmarks_in_the_quick_suite():
    known = bench.available()
    for name in ("judge_accuracy", "judge_floor"):
        assert name in known and "quick" in known[name].suites


@pytest.mark.parametrize("suite,only,message", [
    ("huge", None, "unknown suite"),
    ("quick", ["nope"], "unknown benchmark"),
    ("quick", ["rbm_fake_loglik", "vae"], "unknown benchmark(s) vae"),
    ("quick", ["dbn"], "unknown benchmark(s) dbn"),  # the dbn group has no quick benchmark
])
def test_unknown_suite_or_benchmark_is_a_clear_error(fake_registry, tmp_path, suite, only, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(tmp_path, suite=suite, only=only)
    assert not (tmp_path / "BENCHMARKS.md").exists()


def _names(selected):
    return [b.name for b in selected]


def test_selection_by_suite_name_or_group():
    assert _names(bench.select_benchmarks(FAKES, None, "quick")) == ["rbm_fake_loglik", "ebm_fake_samples"]
    assert _names(bench.select_benchmarks(FAKES, ["ebm", "rbm"], "quick")) == ["ebm_fake_samples",
                                                                              "rbm_fake_loglik"]
    # an exact name runs whatever its suites
    assert _names(bench.select_benchmarks(FAKES, ["dbn_fake_broken"], "quick")) == ["dbn_fake_broken"]
    with pytest.raises(ConfigError, match="groups: dbn, ebm, rbm"):
        bench.select_benchmarks(FAKES, ["ebm"], "full")  # the ebm group has no full-suite benchmark


def test_a_failing_benchmark_is_recorded_as_failed_and_shown(fake_registry, tmp_path, capsys):
    code, results, text = _run(tmp_path, suite="full")
    assert code == 1
    failed = json.loads((results / "dbn_fake_broken.json").read_text())
    assert failed["status"] == "failed" and failed["records"] == []
    assert "RuntimeError: chains diverged at step 7" in failed["error"]
    ok = json.loads((results / "rbm_fake_loglik.json").read_text())
    assert ok["status"] == "ok" and ok["commit"] == "abc123def456"
    assert all({"wall_s", "device", "commit"} <= set(r) for r in ok["records"])
    assert "| dbn_fake_broken | **failed** |" in text
    assert "dbn_fake_broken failed:** `RuntimeError: chains diverged at step 7`" in text
    # the DBN paper row says why there is no number instead of leaving it blank
    assert "— (benchmark failed: dbn_fake_broken)" in text


def test_leaderboard_puts_our_number_beside_the_paper_with_costs(fake_registry, tmp_path):
    _, _, text = _run(tmp_path, only=["rbm_fake_loglik"])
    row = next(line for line in text.splitlines() if line.startswith("| rbm | mnist | test_loglik_nats"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "-88.5 ± 0.2" and cells[4] == "-86.34"
    assert cells[6] == "-2.16 (worse)" and "Salakhutdinov & Murray 2008" in cells[7]
    assert cells[8:11] == ["812", "1234", "350"]  # train wall s, samples/s (sibling record), peak MB
    assert cells[11] == "cpu" and cells[13] == bench.machine_info()["torch"] and cells[14] == "`abc123def456`"
    for paper in ("Hinton, Osindero & Teh 2006", "Burda, Grosse & Salakhutdinov 2015", "nanoGPT"):
        assert paper in text
    assert "84.78" in text and "86.76" in text and "1.47" in text and "1.25" in text
    assert text.count("not measured yet") == 4


def test_a_failure_never_leaves_the_old_number_in_place(fake_registry, tmp_path, monkeypatch):
    _run(tmp_path, only=["rbm_fake_loglik"])
    monkeypatch.setitem(FAKES, "rbm_fake_loglik", Benchmark("rbm_fake_loglik", _broken, ("quick",), "fake"))
    code, results, text = _run(tmp_path, only=["rbm_fake_loglik"])
    assert code == 1 and json.loads((results / "rbm_fake_loglik.json").read_text())["records"] == []
    assert "-88.5" not in text and "benchmark failed: rbm_fake_loglik" in text


def test_sample_quality_table_and_plots(fake_registry, tmp_path):
    _, results, text = _run(tmp_path)
    assert "## Sample quality (genlab judge)" in text and "not Inception-v3" in text
    floor = text.index("| mnist | real test images (floor) |")
    ebm = text.index("| mnist | ebm | 1000 |")
    assert floor < ebm  # sorted by FD within a dataset
    assert "0.9 ± 0.1" in text
    plots = results.parent / "plots"
    for name in ("paper_comparison", "sample_quality", "bench_wall_time"):
        png = plots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](benchmarks/plots/{name}.png)" in text


def test_report_is_regenerated_from_the_json_files_alone(fake_registry, tmp_path):
    _, results, first = _run(tmp_path, suite="full")
    out = tmp_path / "again.md"
    report.write_report(results, out)
    assert out.read_text() == first
    path = results / "rbm_fake_loglik.json"
    document = json.loads(path.read_text())
    document["records"][0]["value"] = -85.0
    path.write_text(json.dumps(document))
    report.write_report(results, out)
    regenerated = out.read_text()
    assert "-85 ± 0.2" in regenerated and "+1.34 (better)" in regenerated and "-88.5" not in regenerated


def test_empty_results_give_a_report_that_says_so(tmp_path):
    out = report.write_report(tmp_path / "results", tmp_path / "BENCHMARKS.md")
    assert "No results yet" in Path(out).read_text()


@pytest.mark.parametrize("content,message", [
    ("{not json", "is corrupt"),
    ('{"records": []}', "not a genlab benchmark results file"),
    ("[1, 2]", "not a genlab benchmark results file"),
])
def test_corrupt_results_file_is_a_clear_error(tmp_path, content, message):
    results = tmp_path / "results"
    results.mkdir()
    (results / "rbm_speed.json").write_text(content)
    with pytest.raises(GenlabError, match=message) as caught:
        report.write_report(results, tmp_path / "BENCHMARKS.md")
    assert "rbm_speed.json" in str(caught.value)


def test_cli_reports_a_corrupt_results_file_on_one_line(tmp_path, capsys, monkeypatch):
    from genlab.cli import main

    monkeypatch.setattr(bench, "available", lambda: {"ebm_fake_samples": FAKES["ebm_fake_samples"]})
    monkeypatch.setattr(bench, "git_commit", lambda: "abc123def456")
    results = tmp_path / "results"
    results.mkdir()
    (results / "old.json").write_text("{truncated")
    code = main(["bench", "--results", str(results), "--report", str(tmp_path / "B.md")])
    err = capsys.readouterr().err
    assert code == 2 and "old.json is corrupt" in err and len(err.strip().splitlines()) == 1


def _with_picture(ctx):
    grid = ctx.work_dir / "run" / "samples" / "manifold-step000000100.png"
    grid.parent.mkdir(parents=True)
    grid.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    ctx.keep_picture(grid, "vae-fake-manifold.png", "fake VAE: manifold")
    ctx.keep_picture(ctx.work_dir / "missing.png", "never.png", "a picture the run did not make")
    return [{"model": "vae", "dataset": "mnist", "metric": "test_neg_elbo", "value": 100.0, "unit": "nats"}]


def test_pictures_a_benchmark_keeps_are_copied_beside_the_results_and_shown(fake_registry, tmp_path, monkeypatch):
    monkeypatch.setitem(FAKES, "vae_fake_pictures", Benchmark("vae_fake_pictures", _with_picture, ("quick",), "f"))
    _, results, text = _run(tmp_path, only=["vae_fake_pictures"])
    document = json.loads((results / "vae_fake_pictures.json").read_text())
    assert document["pictures"] == {"fake VAE: manifold": "pictures/vae-fake-manifold.png"}
    kept = results.parent / "pictures" / "vae-fake-manifold.png"
    assert kept.read_bytes() == b"\x89PNG\r\n\x1a\nfake"  # a copy outside the (ignored) work directory
    assert "![fake VAE: manifold](benchmarks/pictures/vae-fake-manifold.png)" in text
    assert "never.png" not in text


def test_papers_match_only_their_exact_dataset_and_targets_know_their_direction():
    document = {"benchmark": "x", "status": "ok", "records": [
        {"model": "conv vae (latent 2)", "dataset": "mnist (threshold)", "metric": "test_nll_iwae_k5000",
         "value": 149.0, "unit": "nats"},
        {"model": "vae", "dataset": "mnist", "metric": "test_nll_iwae_k5000", "value": 88.0, "unit": "nats"},
        {"model": "ebm", "dataset": "mnist", "metric": "recognised_conf_0.9_pct", "value": 55.0, "unit": "%",
         "reference": {"value": 80.0, "source": "target, written before the direction flag"}},
        {"model": "ebm", "dataset": "mnist", "metric": "step_s", "value": 0.7, "unit": "s",
         "reference": {"value": 1.0, "source": "target"}}]}
    rows = report.leaderboard_rows([document])
    ours = {(row["model"], row["metric"]): row for row in rows if row["ours"] is not None}
    assert ("conv vae (latent 2)", "test_nll_iwae_k5000") not in ours  # not Burda's dynamically binarized MNIST
    assert ours[("vae", "test_nll_iwae_k5000")]["paper"] == 86.76
    assert "(worse)" in ours[("ebm", "recognised_conf_0.9_pct")]["verdict"]
    assert "(better)" in ours[("ebm", "step_s")]["verdict"]


def test_resume_reaches_only_benchmarks_that_can_resume_and_is_refused_where_none_can(tmp_path, monkeypatch):
    seen = {}

    def budgeted(ctx):
        seen["budgeted"] = ctx.resume
        return []

    def fixed(ctx):
        seen["fixed"] = ctx.resume
        return []

    fakes = {"ebm_fake_budgeted": Benchmark("ebm_fake_budgeted", budgeted, ("full",), "fake", resumable=True),
             "rbm_fake_fixed": Benchmark("rbm_fake_fixed", fixed, ("full",), "fake")}
    monkeypatch.setattr(bench, "available", lambda: dict(fakes))
    monkeypatch.setattr(bench, "git_commit", lambda: "abc123def456")
    results = tmp_path / "benchmarks" / "results"
    assert bench.run_benchmarks("full", only=None, results_dir=results, report=tmp_path / "B.md",
                                device="cpu", resume=True) == 0
    assert seen == {"budgeted": True, "fixed": False}
    with pytest.raises(ConfigError, match="--resume applies to benchmarks that train for a budget"):
        bench.run_benchmarks("full", only=["rbm_fake_fixed"], results_dir=results, report=tmp_path / "B.md",
                             device="cpu", resume=True)


def test_results_on_another_device_get_their_own_file_and_both_are_reported(fake_registry, tmp_path, monkeypatch):
    assert bench.results_filename("rbm-speed", "cpu") == "rbm-speed.json"
    assert bench.results_filename("rbm-speed", "cuda:1") == "rbm-speed.cuda.json"
    _run(tmp_path, only=["rbm_fake_loglik"])
    # A run on a GPU machine beside the CPU result (the device is resolved before any benchmark runs).
    monkeypatch.setattr("genlab.device.resolve_device", lambda name: name)
    code = bench.run_benchmarks("quick", only=["rbm_fake_loglik"], results_dir=tmp_path / "benchmarks" / "results",
                                report=tmp_path / "BENCHMARKS.md", device="cuda")
    text = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    files = sorted(path.name for path in (tmp_path / "benchmarks" / "results").glob("*.json"))
    assert code == 0 and files == ["rbm_fake_loglik.cuda.json", "rbm_fake_loglik.json"]
    assert "### rbm_fake_loglik\n" in text and "### rbm_fake_loglik (cuda)\n" in text
    monkeypatch.setitem(FAKES, "vae_fake_pictures", Benchmark("vae_fake_pictures", _with_picture, ("quick",), "f"))
    bench.run_benchmarks("quick", only=["vae_fake_pictures"], results_dir=tmp_path / "benchmarks" / "results",
                         report=tmp_path / "BENCHMARKS.md", device="cuda")
    document = json.loads((tmp_path / "benchmarks" / "results" / "vae_fake_pictures.cuda.json").read_text())
    assert document["pictures"] == {"fake VAE: manifold": "pictures/vae-fake-manifold.cuda.png"}
    assert (tmp_path / "benchmarks" / "pictures" / "vae-fake-manifold.cuda.png").is_file()
    for device in ("cuda", "cpu"):  # judge metrics of each device stay in their own row
        bench.run_benchmarks("quick", only=["ebm_fake_samples"], results_dir=tmp_path / "benchmarks" / "results",
                             report=tmp_path / "BENCHMARKS.md", device=device)
    documents = bench.load_results(tmp_path / "benchmarks" / "results")
    ebm_rows = [row for row in report.sample_quality_rows(documents) if row["model"] == "ebm"]
    assert sorted(row["device"] for row in ebm_rows) == ["cpu", "cuda"]


def test_the_10k_leaderboard_puts_each_model_beside_the_real_test_floor(fake_registry, tmp_path, monkeypatch):
    monkeypatch.setitem(FAKES, "gan_fake_leaderboard", Benchmark("gan_fake_leaderboard", _gan_leaderboard,
                                                                 ("full",), "fake"))
    _, results, text = _run(tmp_path, suite="full", only=["gan_fake_leaderboard"])
    assert "## Which family makes the best digits for its CPU minutes (10,000 samples)" in text
    floor = text.index("| mnist | real test images (floor) |")
    model = text.index("| mnist | dcgan | gan_fake_leaderboard | cpu | 25.5 | 9.4 | 116.8 |")
    # The same model sampled through its discriminator is a row of its own.
    rejection = text.index("| mnist | dcgan + discriminator rejection | gan_fake_leaderboard | cpu | 25.5 | 9.4 | 61 |")
    assert floor < rejection < model  # sorted by FD
    rows = report.leaderboard_10k_rows(bench.load_results(results))
    assert [r["floor"] for r in rows] == [True, False, False]
    assert rows[2]["label_accuracy_pct"] == 97.5 and "label_accuracy_pct" not in rows[0]
    assert rows[1]["judge_recall"] == 0.55 and rows[2]["judge_recall"] == 0.68
    assert (results.parent / "plots" / "leaderboard_10k.png").read_bytes()[:4] == b"\x89PNG"


def test_the_cd1_roofline_times_five_matmuls_of_the_step():
    from genlab.bench.rbm_bench import cd1_matmul_seconds

    seconds, flops = cd1_matmul_seconds(batch=4, n_visible=6, n_hidden=3, repeats=2)
    assert seconds > 0 and flops == 5 * 2 * 4 * 6 * 3


def test_a_likelihood_on_part_of_the_test_set_says_so_in_the_report():
    assert report.metric_label({"metric": "test_nll_iwae_k5000", "n_test": 1000}) == \
        "test_nll_iwae_k5000 (first 1,000 test images)"
    assert report.metric_label({"metric": "test_nll_iwae_k5000_full", "n_test": 10000}) == "test_nll_iwae_k5000_full"
    assert report.metric_label({"metric": "judge_fd", "n_test": 10}) == "judge_fd"


def test_one_benchmark_scoring_several_runs_gets_a_leaderboard_row_per_preset():
    def record(preset, fd):
        return {"model": "vae", "dataset": "mnist", "preset": preset, "metric": "judge_fd_10k", "value": fd,
                "images": 10000, "train_minutes": 4.0}

    documents = [{"benchmark": "leaderboard-families", "device": "cpu", "status": "ok",
                  "records": [record("vae-mlp-mnist", 170.0), record("vae-conv-mnist", 685.0)]}]
    rows = report.leaderboard_10k_rows(documents)
    assert [(r["model"], r["judge_fd_10k"]) for r in rows] == [("vae (vae-mlp-mnist)", 170.0),
                                                               ("vae (vae-conv-mnist)", 685.0)]


# ----------------------------------------------------------------------------------------- other work on the CPU


def test_cpu_counters_are_read_from_the_first_line_of_proc_stat(tmp_path):
    from genlab.bench import contention

    stat = tmp_path / "stat"
    stat.write_text("cpu  300 20 80 5000 40 3 7 90 0 0\ncpu0 150 10 40 2500 20 1 3 45 0 0\n", encoding="ascii")
    ticks = contention.os.sysconf("SC_CLK_TCK")
    times = contention.read_cpu_times(stat)
    assert times.busy_s == pytest.approx((300 + 20 + 80 + 3 + 7) / ticks)  # idle and iowait are not busy
    assert times.steal_s == pytest.approx(90 / ticks) and times.own_s > 0
    for broken in ("", "intr 1 2 3\n", "cpu 1 2 three 4 5 6 7 8\n", "cpu 1 2 3\n"):
        stat.write_text(broken, encoding="ascii")
        assert contention.read_cpu_times(stat) is None, broken
    stat.write_bytes(b"\xff\xfe")
    assert contention.read_cpu_times(stat) is None
    assert contention.read_cpu_times(tmp_path / "missing") is None


def test_contention_is_what_others_took_of_all_cores_after_the_benchmarks_own_time():
    from genlab.bench.contention import CpuTimes, contention, is_busy

    before = CpuTimes(busy_s=100.0, steal_s=2.0, own_s=10.0)
    after = CpuTimes(busy_s=130.0, steal_s=3.0, own_s=26.0)  # 30 s busy, 16 of them ours
    shares = contention(before, after, wall_s=10.0, cores=2)
    assert shares == {"other_processes_cpu_pct": 70.0, "steal_pct": 5.0} and is_busy(shares)
    alone = contention(before, CpuTimes(busy_s=119.9, steal_s=2.0, own_s=30.0), wall_s=10.0, cores=2)
    assert alone == {"other_processes_cpu_pct": 0.0, "steal_pct": 0.0} and not is_busy(alone)
    assert contention(None, after, 10.0, 2) is None and contention(before, after, 0.0, 2) is None
    assert not is_busy(None)


def _counters(monkeypatch, others_per_call: float):
    """read_cpu_times that other processes advance by ``others_per_call`` CPU seconds at each reading."""
    from genlab.bench import contention

    calls = iter(range(1_000_000))
    monkeypatch.setattr(contention, "read_cpu_times", lambda stat_path=None: contention.CpuTimes(
        busy_s=others_per_call * next(calls), steal_s=0.0, own_s=0.0))


def test_a_benchmark_that_other_work_slowed_down_says_so(fake_registry, tmp_path, monkeypatch, capsys):
    _counters(monkeypatch, others_per_call=50.0)
    _, results, text = _run(tmp_path, only=["rbm_fake_loglik"])
    printed = capsys.readouterr().out
    assert "[bench] warning: in the 0.25 s before rbm_fake_loglik starts, other processes took" in printed
    document = json.loads((results / "rbm_fake_loglik.json").read_text())
    assert document["cpu_contention"]["other_processes_cpu_pct"] >= 5.0
    assert "While this benchmark ran, other processes took" in " ".join(document["notes"])
    assert "below this machine's undisturbed figures" in text


def test_an_undisturbed_benchmark_records_its_quiet_machine(fake_registry, tmp_path, monkeypatch, capsys):
    _counters(monkeypatch, others_per_call=0.0)
    _, results, text = _run(tmp_path, only=["rbm_fake_loglik"])
    document = json.loads((results / "rbm_fake_loglik.json").read_text())
    assert document["cpu_contention"] == {"other_processes_cpu_pct": 0.0, "steal_pct": 0.0}
    assert document["notes"] == [] and "warning" not in capsys.readouterr().out
    assert "undisturbed" not in text
