"""The character LSTM: all-position loss, generation (temperature, top-k, streaming, incremental state),
whole-split evaluation, truncated BPTT with a carried state and its exact resume, the text data options it uses,
and its benchmarks at smoke size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from checkpoint_helpers import final_state

from genlab.config import DataConfig, apply_overrides, build_run_config
from genlab.data.datasets import IGNORE_INDEX, build_data
from genlab.errors import ConfigError, DataError
from genlab.eval.text import bits_from_nats, chunk_nll, rejoin, stream_nll, text_loss
from genlab.models.base import DataInfo
from genlab.models.char_rnn import CharLSTM, CharLSTMConfig, pick_next
from genlab.training import checkpoint as ckpt
from genlab.training.run import train
from genlab.training.trainer import cpu_has_native_bf16

VOCAB = "\n !',.:;?abcdefghijklmnopqrstuvwxyzRJ"
LINES = ("romeo: but soft, what light through yonder window breaks?\n"
         "juliet: o romeo, romeo! wherefore art thou romeo?\n"
         "romeo: shall i hear more, or shall i speak at this?\n")


def corpus(tmp_path: Path, repeats: int = 12) -> Path:
    path = tmp_path / "play.txt"
    path.write_text(LINES * repeats, encoding="utf-8")
    return path


def tiny_model(seed: int = 0, **overrides) -> CharLSTM:
    torch.manual_seed(seed)
    settings = {"layers": (24, 16), "embedding_dim": 12, "vocab": VOCAB, "seed_windows": 4, "seed_length": 8,
                "sample_length": 12, **overrides}
    return CharLSTM(CharLSTMConfig(**settings)).eval()


def run_config(dataset: Path, out: Path, *extra: str):
    overrides = [f"data.dataset={dataset}", "data.seq_len=16", "data.batch_size=4", "data.val_fraction=0.2",
                 "model.layers=24,16", "model.embedding_dim=12", "model.seed_windows=4", "model.seed_length=8",
                 "model.sample_length=12", "optim.lr=0.01", "optim.grad_clip=1.0", "train.epochs=1",
                 "train.num_samples=1", "train.progress=false", "train.device=cpu", f"train.out_dir={out}",
                 "train.log_every=5", *extra]
    return build_run_config(apply_overrides({"model_name": "char-lstm"}, overrides))


# ---------------------------------------------------------------------------------------------------- config


def test_config_parses_layers_and_rejects_bad_values():
    config = run_config(Path("x.txt"), Path("out"), "model.layers=128,128").model
    assert config.layers == (128, 128)
    with pytest.raises(ConfigError, match="tie_weights needs the last LSTM size \\(16\\) to equal"):
        CharLSTMConfig(layers=(24, 16), embedding_dim=12, tie_weights=True)
    for bad in ({"layers": ()}, {"layers": (0,)}, {"dropout": 1.0}, {"vocab": "aa"}, {"eval_context": "all"},
                {"eval_streams": 0}):
        with pytest.raises(ConfigError):
            CharLSTMConfig(**bad)
    with pytest.raises(ConfigError, match="data.text_order"):
        DataConfig(text_order="random")


def test_adapt_config_takes_the_vocabulary_and_refuses_images_or_a_conflict():
    info = DataInfo(kind="text", shape=(16,), vocab="abc")
    assert CharLSTM.adapt_config(CharLSTMConfig(), info).vocab == "abc"
    with pytest.raises(ConfigError, match="differs from the training text"):
        CharLSTM.adapt_config(CharLSTMConfig(vocab="abd"), info)
    with pytest.raises(ConfigError, match="models text"):
        CharLSTM.adapt_config(CharLSTMConfig(), DataInfo(kind="image", shape=(1, 28, 28)))
    with pytest.raises(ConfigError, match="vocab is empty"):
        CharLSTM(CharLSTMConfig())


def test_tied_weights_share_one_matrix_and_survive_a_checkpoint(tmp_path):
    model = tiny_model(layers=(16, 12), tie_weights=True)
    assert model.head.weight is model.embedding.weight
    ckpt.save_model_file(tmp_path / "m.safetensors", model, {"model_name": "char-lstm"})
    from safetensors.torch import load_file

    rebuilt = tiny_model(seed=1, layers=(16, 12), tie_weights=True)
    rebuilt.load_state_dict(load_file(str(tmp_path / "m.safetensors")), strict=True)
    assert rebuilt.head.weight is rebuilt.embedding.weight
    assert torch.equal(rebuilt.head.weight, model.embedding.weight)


# ---------------------------------------------------------------------------------------------------- loss


def test_loss_at_init_is_log_vocab_and_bits_are_nats_over_ln2():
    model = tiny_model().train()
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(len(VOCAB), (8, 32), generator=generator)
    y = torch.randint(len(VOCAB), (8, 32), generator=generator)
    loss, logs = model.loss((x, y))
    assert abs(loss.item() - math.log(len(VOCAB))) < 0.03
    assert logs["nats_per_char"] == pytest.approx(loss.item())
    assert logs["bits_per_char"] == pytest.approx(loss.item() / math.log(2))
    assert bits_from_nats(math.log(2)) == pytest.approx(1.0)


def test_loss_is_the_mean_cross_entropy_over_every_position_and_skips_ignored_targets():
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(len(VOCAB), (3, 10), generator=generator)
    y = torch.randint(len(VOCAB), (3, 10), generator=generator)
    logits, _ = model.network(x)
    log_probs = torch.log_softmax(logits, dim=-1)
    expected = -log_probs.gather(-1, y[..., None]).mean()
    assert model.loss((x, y))[0].item() == pytest.approx(expected.item(), rel=1e-5)
    y_masked = y.clone()
    y_masked[:, 5:] = IGNORE_INDEX
    expected_masked = -log_probs[:, :5].gather(-1, y[:, :5, None]).mean()
    assert model.loss((x, y_masked))[0].item() == pytest.approx(expected_masked.item(), rel=1e-5)


def test_bad_batches_are_data_errors():
    model = tiny_model()
    with pytest.raises(DataError, match="LongTensors"):
        model.loss((torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(DataError, match="ids must be in"):
        model.loss((torch.full((2, 4), len(VOCAB)), torch.zeros(2, 4, dtype=torch.long)))


# ---------------------------------------------------------------------------------------------------- sampling


def test_temperature_zero_is_deterministic_argmax():
    logits = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.0, 1.9]])
    assert pick_next(logits, temperature=0.0, top_k=None, generator=None).tolist() == [1, 0]
    model = tiny_model()
    texts = {"".join(model.stream(prompt="romeo", length=20, temperature=0.0,
                                  generator=torch.Generator().manual_seed(seed))) for seed in (0, 1, 2)}
    assert len(texts) == 1
    # Greedy decoding by hand from full forward passes gives the same characters.
    ids = model.encode_prompt("romeo")
    generated = []
    for _ in range(20):
        logits, _ = model.network(ids[None])
        next_id = int(logits[0, -1].argmax())
        generated.append(VOCAB[next_id])
        ids = torch.cat([ids, torch.tensor([next_id])])
    assert texts.pop() == "".join(generated)


def test_top_k_restricts_the_support_and_temperature_rescales_the_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.5]]).expand(20000, -1)
    generator = torch.Generator().manual_seed(0)
    draws = pick_next(logits, temperature=1.0, top_k=2, generator=generator)
    assert set(draws.unique().tolist()) == {2, 3}
    expected = torch.softmax(torch.tensor([2.0, 3.0]), 0)[1].item()
    observed = (draws == 3).float().mean().item()
    assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / 20000)
    draws = pick_next(logits, temperature=0.5, top_k=None, generator=generator)
    counts = torch.bincount(draws, minlength=5).float()
    probs = torch.softmax(logits[0] / 0.5, 0)
    chi2 = float(((counts - 20000 * probs) ** 2 / (20000 * probs)).sum())
    assert chi2 < 20.5  # 4 degrees of freedom, p ~ 0.0004
    tiny = pick_next(logits[:3], temperature=1e-30, top_k=None, generator=generator)
    assert tiny.tolist() == [3, 3, 3]  # no overflow to NaN at very small temperatures


def test_stream_equals_sample_with_the_same_generator():
    model = tiny_model()
    for prompt, top_k in (("juliet:", 5), (None, None)):
        streamed = "".join(model.stream(prompt=prompt, length=30, temperature=0.9, top_k=top_k,
                                        generator=torch.Generator().manual_seed(7)))
        ids = model.sample(1, prompt=prompt, length=30, temperature=0.9, top_k=top_k,
                           generator=torch.Generator().manual_seed(7))
        assert ids.shape == (1, 30) and ids.dtype == torch.long
        assert streamed == model.vocab.decode(ids[0])
    assert model.sample(3, length=5, generator=torch.Generator().manual_seed(0)).shape == (3, 5)


def test_incremental_state_gives_the_logits_of_a_full_forward_pass():
    model = tiny_model()
    ids = torch.randint(len(VOCAB), (2, 25), generator=torch.Generator().manual_seed(3))
    full, _ = model.network(ids)
    _, final = model.network(ids[:, :6])
    state = [(h[0], c[0]) for h, c in final]
    for t in range(6, 25):
        logits, state = model.step(ids[:, t], state)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-5, atol=1e-5)


def test_stream_reads_the_prompt_once():
    model = tiny_model()
    positions = []
    handle = model.embedding.register_forward_hook(lambda module, args, out: positions.append(args[0].numel()))
    try:
        text = "".join(model.stream(prompt="romeo: ", length=40, generator=torch.Generator().manual_seed(0)))
    finally:
        handle.remove()
    assert len(text) == 40
    assert positions[0] == len("romeo: ") and all(count == 1 for count in positions[1:])
    assert sum(positions) == len("romeo: ") + 40 - 1


def test_stream_yields_lazily():
    model = tiny_model()
    pieces = model.stream(prompt="romeo", length=10 ** 9, generator=torch.Generator().manual_seed(0))
    first = [next(pieces) for _ in range(3)]
    assert all(isinstance(piece, str) and len(piece) == 1 for piece in first)
    assert torch.is_grad_enabled()  # the caller's grad mode is untouched between characters


def test_bad_generation_options_are_typed_errors():
    model = tiny_model()
    with pytest.raises(DataError, match=r"'Z' x2, '@' x1.*unknown='skip'.*unknown='replace'"):
        model.stream(prompt="ZZ@romeo", length=5)
    skipped = model.sample(1, prompt="Zromeo", unknown="skip", length=5, temperature=0.0)
    assert torch.equal(skipped, model.sample(1, prompt="romeo", length=5, temperature=0.0))
    assert model.sample(1, prompt="@", unknown="replace", length=2).shape == (1, 2)
    with pytest.raises(DataError, match="no characters left"):
        model.stream(prompt="ZZ", unknown="skip")
    for options, fragment in (({"temperature": -0.1}, "temperature"), ({"temperature": math.nan}, "temperature"),
                              ({"top_k": 0}, "top_k"), ({"length": 0}, "length"), ({"unknown": "drop"}, "unknown"),
                              ({"steps": 3}, "does not take steps")):
        with pytest.raises(ConfigError, match=fragment):
            model.stream(**options)
        with pytest.raises(ConfigError, match=fragment):
            model.sample(2, **options)


def test_unprompted_generation_starts_from_stored_training_windows():
    model = tiny_model()
    fresh = model.sample(2, length=4, generator=torch.Generator().manual_seed(0))
    assert fresh.shape == (2, 4)  # no data seen yet: a random vocabulary character starts each row
    text_ids = model.vocab.encode(LINES * 3)
    rows = text_ids[: 16 * 8].reshape(8, 16)
    torch.manual_seed(0)
    model.init_from_data([(rows, rows)])
    windows = [model.vocab.decode(row) for row in model.seed_text_ids]
    assert all(len(window) == 8 and window in LINES * 3 for window in windows)
    snapshot = model.snapshots(1, generator=torch.Generator().manual_seed(0))
    assert list(snapshot) == ["seed text", "temperature 0", "temperature 0.25", "temperature 0.5",
                              "temperature 0.75"]
    assert snapshot["seed text"] in windows
    assert all(len(text) == 12 for name, text in snapshot.items() if name != "seed text")


# ---------------------------------------------------------------------------------------------------- data


def test_stream_layout_continues_rows_across_batches(tmp_path):
    config = DataConfig(dataset=str(corpus(tmp_path)), seq_len=7, batch_size=3, text_order="streams",
                        val_fraction=0.2)
    data = build_data(config, seed=0)
    batches = list(data.train)
    assert len(batches) >= 3 and all(x.shape == (3, 7) for x, _ in batches)
    for (_, y_prev), (x_next, _) in zip(batches, batches[1:]):
        assert torch.equal(y_prev[:, -1], x_next[:, 0])
    for x, y in batches:
        assert torch.equal(x[:, 1:], y[:, :-1])
    # Each stream is a contiguous piece of the training text.
    vocab_chars = data.info.vocab
    stream0 = "".join(vocab_chars[int(x[0, 0])] for x, _ in batches[:1]) + "".join(
        "".join(vocab_chars[int(i)] for i in y[0]) for _, y in batches)
    assert stream0 in (LINES * 12)[: int(len(LINES * 12) * 0.8)]
    with pytest.raises(DataError, match="too few for 300 contiguous streams"):
        build_data(DataConfig(dataset=str(corpus(tmp_path)), seq_len=7, batch_size=300, text_order="streams"),
                   seed=0)


def test_stream_layout_under_two_processes_splits_the_streams_between_ranks():
    from genlab.data.datasets import _streams
    from genlab.data.loader import BatchLoader

    positions = torch.arange(10 * 6 * 4 + 1)  # ids = positions, so rows show where they come from
    rows = _streams(positions, 4, 6)
    loaders = [BatchLoader(rows, 3, shuffle=False, rank=r, world_size=2, drop_last=True) for r in (0, 1)]
    per_rank = [list(loader) for loader in loaders]
    assert [len(batches) for batches in per_rank] == [10, 10]
    for index in range(10):
        starts = torch.cat([per_rank[0][index][0][:, 0], per_rank[1][index][0][:, 0]])
        assert sorted(starts.tolist()) == [s * 40 + index * 4 for s in range(6)]  # every stream once
    for batches in per_rank:
        for (_, y_prev), (x_next, _) in zip(batches, batches[1:]):
            assert torch.equal(y_prev[:, -1], x_next[:, 0])


def test_validation_tail_scores_every_character(tmp_path):
    text = (LINES * 12)
    path = corpus(tmp_path)
    val_text = text[int(len(text) * 0.8):]
    config = DataConfig(dataset=str(path), seq_len=16, batch_size=4, val_fraction=0.2, text_val_tail=True)
    data = build_data(config, seed=0)
    inputs, targets = rejoin(data.val)
    assert len(targets) == len(val_text) - 1
    assert "".join(data.info.vocab[int(i)] for i in targets) == val_text[1:]
    plain = build_data(DataConfig(dataset=str(path), seq_len=16, batch_size=4, val_fraction=0.2), seed=0)
    assert len(rejoin(plain.val)[1]) == (len(val_text) - 1) // 16 * 16


@pytest.mark.parametrize("contents, fragment", [
    (b"", "empty"),
    (b"caf\xe9 au lait, long enough to be a sequence of text", "not valid UTF-8"),
    (b"romeo\x00juliet and more text here", "looks binary"),
    (b"too short", "fewer than one training sequence"),
])
def test_bad_text_files_are_data_errors(tmp_path, contents, fragment):
    path = tmp_path / "bad.txt"
    path.write_bytes(contents)
    with pytest.raises(DataError, match=fragment):
        train(run_config(path, tmp_path / "runs", "data.val_fraction=0.0"))


# ---------------------------------------------------------------------------------------------------- evaluation


def test_evaluation_matches_a_hand_computed_likelihood():
    model = tiny_model()
    ids = model.vocab.encode(LINES)
    inputs, targets = ids[:-1], ids[1:]
    logits, _ = model.network(inputs[None])
    exact = F.cross_entropy(logits[0], targets, reduction="sum").item()
    one_stream = stream_nll(model._forward_eval, inputs, targets, streams=1, chunk_len=7)
    assert one_stream.chars == len(targets)
    assert one_stream.total_nats == pytest.approx(exact, rel=1e-5)
    # Rows of a padded split rejoin into the same sequence; chunk context restarts every row.
    seq_len = 16
    count = len(inputs) // seq_len
    rows_x = inputs[: count * seq_len].reshape(count, seq_len)
    rows_y = targets[: count * seq_len].reshape(count, seq_len)
    batches = [(rows_x[:3], rows_y[:3]), (rows_x[3:], rows_y[3:])]
    carried = text_loss(model._forward_eval, batches, context="carry", streams=1, chunk_len=seq_len)
    logits_rows, _ = model.network(rows_x)
    per_row = F.cross_entropy(logits_rows.reshape(-1, len(VOCAB)), rows_y.reshape(-1), reduction="sum").item()
    assert chunk_nll(model._forward_eval, batches).total_nats == pytest.approx(per_row, rel=1e-5)
    prefix, _ = model.network(inputs[None, : count * seq_len])
    exact_prefix = F.cross_entropy(prefix[0], rows_y.reshape(-1), reduction="sum").item()
    assert carried.total_nats == pytest.approx(exact_prefix, rel=1e-5)
    metrics = model.evaluate(batches, context="carry", streams=3)
    assert metrics["val_chars"] == count * seq_len
    assert metrics["val_bits_per_char"] == pytest.approx(metrics["val_nats_per_char"] / math.log(2))
    with pytest.raises(DataError, match="original order"):
        text_loss(model._forward_eval, batches[::-1], context="carry")
    with pytest.raises(ConfigError, match="unknown char-lstm eval option"):
        model.evaluate(batches, ais_runs=3)


# ---------------------------------------------------------------------------------------------------- engine


def test_one_batch_through_the_engine_and_back_from_the_checkpoint(tmp_path):
    path = corpus(tmp_path)
    run_dir = train(run_config(path, tmp_path / "runs", "train.max_steps=1", "data.text_val_tail=true"))
    rows = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    assert '"bits_per_char"' in rows[0] and '"nats_per_char"' in rows[0]
    samples = (run_dir / "samples.md").read_text(encoding="utf-8")
    for name in ("seed text", "temperature 0", "temperature 0.25", "temperature 0.5", "temperature 0.75"):
        assert f"### {name}\n" in samples
    model, config = ckpt.load_model(run_dir)
    assert config.model.vocab == model.vocab.chars and set(model.vocab.chars) == set(LINES)
    assert bool((model.seed_text_ids >= 0).all())
    text = "".join(model.stream(prompt="romeo", length=15, generator=torch.Generator().manual_seed(0)))
    assert len(text) == 15 and set(text) <= set(LINES)
    data = build_data(config.data, seed=0, splits=("val", "test"))
    metrics = model.evaluate(data.test)
    assert metrics["val_chars"] == len((LINES * 12)[int(len(LINES * 12) * 0.8):]) - 1
    assert 0 < metrics["val_nats_per_char"] < math.log(len(model.vocab)) + 0.1


def test_carried_state_resume_is_exact(tmp_path):
    path = corpus(tmp_path, repeats=6)
    carry = ("data.text_order=streams", "model.carry_state=true", "model.dropout=0.2", "train.epochs=2",
             "train.validate=false")
    straight = train(run_config(path, tmp_path / "a", *carry))
    steps_per_epoch = int(ckpt.latest_checkpoint(straight).name.split("-")[1]) // 2
    stop = steps_per_epoch + 2  # mid-epoch 2, with a state carried from the previous batch
    partial = train(run_config(path, tmp_path / "b", *carry, f"train.max_steps={stop}"))
    assert "extra.carried_h0" in final_state(partial)
    train(run_config(path, tmp_path / "b", *carry), resume_dir=partial)
    expected, got = final_state(straight), final_state(partial)
    assert expected.keys() == got.keys() and "extra.carried_c1" in got
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="oneDNN's bf16 LSTM needs a CPU with native bf16 "
                                                    "(AVX512-BF16 or AMX); elsewhere the run stays in float32")
def test_bf16_autocast_on_the_cpu_trains_in_bf16_carries_float32_and_resumes_exactly(tmp_path, monkeypatch):
    path = corpus(tmp_path, repeats=6)
    amp = ("data.text_order=streams", "model.carry_state=true", "train.epochs=2", "train.validate=false",
           "train.amp=true")
    dtypes = []
    network_forward = CharLSTM.loss

    def recording_loss(self, batch):
        dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return network_forward(self, batch)

    monkeypatch.setattr(CharLSTM, "loss", recording_loss)
    straight = train(run_config(path, tmp_path / "a", *amp))
    assert dtypes and set(dtypes) == {torch.bfloat16}
    state = final_state(straight)
    assert state["extra.carried_h0"].dtype == torch.float32 and state["extra.carried_c1"].dtype == torch.float32
    plain = final_state(train(run_config(path, tmp_path / "fp32", *amp[:-1])))
    weights = [key for key in state if key.endswith("head.weight")]
    assert weights and not torch.equal(plain[weights[0]], state[weights[0]])  # autocast did change the math
    steps_per_epoch = int(ckpt.latest_checkpoint(straight).name.split("-")[1]) // 2
    partial = train(run_config(path, tmp_path / "b", *amp, f"train.max_steps={steps_per_epoch + 2}"))
    train(run_config(path, tmp_path / "b", *amp), resume_dir=partial)
    got = final_state(partial)
    assert state.keys() == got.keys()
    for key in state:
        assert torch.equal(state[key], got[key]), key


def test_carry_state_needs_the_stream_layout(tmp_path):
    path = corpus(tmp_path)
    with pytest.raises(ConfigError, match="data.text_order=streams"):
        train(run_config(path, tmp_path / "runs", "model.carry_state=true", "train.max_steps=4"))


def test_carried_state_changes_the_loss_of_the_next_batch():
    model = tiny_model(carry_state=True).train()
    ids = model.vocab.encode(LINES)[: 2 * 2 * 10 + 1]
    # Two streams (ids[0:20] and ids[20:40]) read in two chunks of 10.
    streams_x = torch.stack([ids[:10], ids[20:30]]), torch.stack([ids[10:20], ids[30:40]])
    streams_y = torch.stack([ids[1:11], ids[21:31]]), torch.stack([ids[11:21], ids[31:41]])
    model.on_epoch_start(0)
    model.loss((streams_x[0], streams_y[0]))
    carried, _ = model.loss((streams_x[1], streams_y[1]))
    fresh = tiny_model(carry_state=False).train()
    fresh.load_state_dict(model.state_dict())
    cold, _ = fresh.loss((streams_x[1], streams_y[1]))
    assert carried.item() != pytest.approx(cold.item(), abs=1e-6)
    assert set(model.extra_state()) == {"carried_epoch", "carried_targets", "carried_h0", "carried_c0",
                                        "carried_h1", "carried_c1"}
    model.on_epoch_start(1)  # a new epoch reads the streams from their start again
    assert model.extra_state() == {}


# ---------------------------------------------------------------------------------------------------- benchmarks


def test_benchmark_functions_at_smoke_size():
    from genlab.bench.char_bench import generation_speed, training_throughput

    ids = tiny_model().vocab.encode(LINES * 4)
    model = tiny_model().train()
    for formulation in ("all", "last"):
        result = training_throughput(model, ids, formulation=formulation, seq_len=10, batch_size=4, steps=2)
        per_step = 4 * 10 if formulation == "all" else 4
        assert result["chars"] == 2 * per_step and result["chars_per_s"] > 0
    with pytest.raises(ConfigError):
        training_throughput(model, ids, formulation="middle", seq_len=10, batch_size=4, steps=2)
    speed = generation_speed(tiny_model(), length=20, prompt="romeo")
    assert speed["chars"] == 20 and speed["chars_per_s"] > 0
