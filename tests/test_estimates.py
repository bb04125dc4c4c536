"""Long commands say how long: the estimate and ETA texts, the fine-tuning step timer (steps counted by the trainer,
remaining steps when resumed) and the corpus timer of ``evaluate`` (documents per task, scores unchanged)."""

import datetime
import re

import pytest

from effir_surgery._logging import (
    Every,
    estimate_line,
    format_clock,
    format_duration,
    format_rate,
    progress_line,
)

NOW = datetime.datetime(2026, 3, 3, 13, 50, 0)  # a Tuesday

ESTIMATE = r"about [\d.,]+ {unit} on cpu: estimated total [\d.]+ (s|min) \(ETA \d\d:\d\d\)"


@pytest.mark.parametrize(
    "seconds, text",
    [
        (-3, "0 s"),
        (0.4, "0 s"),
        (45, "45 s"),
        (89, "89 s"),
        (90, "1.5 min"),
        (252, "4.2 min"),
        (597, "10 min"),
        (38 * 60, "38 min"),
        (89 * 60, "89 min"),
        (90 * 60, "1 h 30 min"),
        (2 * 3600 + 5 * 60 + 10, "2 h 05 min"),
        (30 * 3600, "30 h 00 min"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_clock_names_the_day_only_when_it_is_not_today():
    assert format_clock(0, NOW) == "13:50"
    assert format_clock(15 * 60 + 29, NOW) == "14:05"  # minutes are truncated, as a clock shows them
    assert format_clock(-100, NOW) == "13:50"
    assert format_clock(11 * 3600, NOW) == "Wed 00:50"
    assert format_clock(6 * 86400, NOW) == "Mon 13:50"
    assert format_clock(8 * 86400, NOW) == "2026-03-11 13:50"


@pytest.mark.parametrize(
    "value, text", [(1730.4, "1,730"), (12.3, "12"), (2.14, "2.1"), (0.348, "0.35"), (0.0123, "0.012")]
)
def test_format_rate(value, text):
    assert format_rate(value) == text


def test_estimate_and_progress_lines():
    per_step, steps, left = 2.1, 938, 900
    line = estimate_line(
        f"{steps} steps", f"{format_rate(per_step)} s/step", "cpu", steps * per_step, left * per_step, NOW
    )
    assert line == "938 steps; about 2.1 s/step on cpu: estimated total 33 min (ETA 14:21)"
    line = progress_line("step 120/938, loss 0.8123", 29 * 60, NOW)
    assert line == "step 120/938, loss 0.8123, ETA 14:19 (29 min left)"


def test_every_throttles_to_one_yes_per_interval():
    now = [100.0]
    every = Every(30, clock=lambda: now[0])
    assert not every.due()  # counted from creation
    now[0] = 129.9
    assert not every.due()
    now[0] = 130.0
    assert every.due() and not every.due()
    now[0] = 165.0
    assert every.due()
    assert Every(0, clock=lambda: now[0]).due()


# --- fine-tuning -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("qwen3"), tiny_tokenizer(), tmp_path_factory.mktemp("src") / "tiny-qwen3")


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    from conftest import make_beir

    return make_beir(tmp_path_factory.mktemp("data") / "beir", n_docs=40, n_queries=16)


def _finetune_config(source, train, out, **overrides):
    from effir_surgery.config import FinetuneConfig

    values = dict(
        model=str(source),
        train=str(train),
        output=out,
        batch_size=8,
        mini_batch_size=8,
        max_length=32,
        device="cpu",
        logging_steps=1,
        warmup_ratio=0.0,
        verify_reload=False,
    )
    return FinetuneConfig(**(values | overrides))


@pytest.mark.integration
def test_finetune_announces_steps_and_an_estimate(source, beir, tmp_path, capsys, monkeypatch):
    """16 rows, batch 8, 2 epochs: the trainer's 4 steps are announced, then estimated from the second step; with
    progress bars off, the loss and ETA follow at logging steps (the throttle set to zero here)."""
    import effir_surgery.finetune.train as train

    monkeypatch.setattr("effir_surgery.finetune.progress.PROGRESS_SECONDS", 0.0)
    result = train.finetune(_finetune_config(source, beir, tmp_path / "out", epochs=2))
    lines = capsys.readouterr().err.splitlines()
    assert result.steps == 4 and result.examples == 16
    assert "Fine-tuning on 16 examples: 4 steps (batch 8) on cpu" in lines
    estimates = [line for line in lines if "estimated total" in line]
    assert len(estimates) == 1 and re.fullmatch("4 steps; " + ESTIMATE.format(unit="s/step"), estimates[0])
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split(",")[0] for line in progress] == ["step 2/4", "step 3/4", "step 4/4"]
    assert all(re.fullmatch(r"step \d/4, loss [\d.]+, ETA \d\d:\d\d \([\d.]+ (s|min) left\)", p) for p in progress)


@pytest.mark.integration
def test_finetune_quiet_without_steps_to_estimate(source, beir, tmp_path, capsys):
    """Two steps: nothing is left once the second is timed, so the run is only announced."""
    from effir_surgery.finetune import finetune

    finetune(_finetune_config(source, beir, tmp_path / "out", max_steps=2))
    err = capsys.readouterr().err
    assert "Fine-tuning on 16 examples: 2 steps (batch 8) on cpu" in err
    assert "estimated total" not in err and "ETA" not in err  # progress lines wait for the throttle (30 s)


def test_resumed_finetune_estimates_the_steps_left(source, beir, tmp_path, capsys, monkeypatch):
    import effir_surgery.finetune.train as train

    real = train._step_timer

    def stopping_after_step_3(*args):
        timer = real(*args)
        on_step_end = timer.on_step_end

        def stop(args, state, control, **kwargs):
            on_step_end(args, state, control, **kwargs)
            if state.global_step == 3:
                raise RuntimeError("interrupted")

        timer.on_step_end = stop
        return timer

    config = _finetune_config(source, beir, tmp_path / "out", max_steps=6, save_steps=2)
    monkeypatch.setattr(train, "_step_timer", stopping_after_step_3)
    with pytest.raises(RuntimeError, match="interrupted"):
        train.finetune(config)
    capsys.readouterr()
    monkeypatch.setattr(train, "_step_timer", real)
    result = train.finetune(config)
    lines = capsys.readouterr().err.splitlines()
    assert result.resumed_from_step == 2 and result.steps == 6
    assert "Fine-tuning on 16 examples: 4 of 6 steps left (batch 8) on cpu" in lines
    estimates = [line for line in lines if "estimated total" in line]
    assert len(estimates) == 1 and re.fullmatch("4 steps of 6; " + ESTIMATE.format(unit="s/step"), estimates[0])


# --- evaluation ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from conftest import build_tiny, save_tiny_source, tiny_tokenizer

    return save_tiny_source(build_tiny("llama"), tiny_tokenizer(), tmp_path_factory.mktemp("m") / "tiny")


def _evaluate(model, folder, out, **settings):
    from effir_surgery.config import EvalConfig
    from effir_surgery.evaluate import evaluate

    config = EvalConfig(models=[str(model)], data_dir=[str(folder)], output=out, measure=False, **settings)
    return evaluate(config).models[0]["tasks"][0]["scores"]


@pytest.mark.integration
def test_evaluate_announces_documents_and_an_estimate_without_changing_scores(
    tiny_folder, tmp_path, capsys, monkeypatch
):
    """The measurement window and throttle set to zero so that a tiny corpus shows what a long one does: counts,
    one estimate from the timed batches, progress lines. The scores are those of a run without the timer."""
    import contextlib

    from conftest import make_beir

    import effir_surgery.evaluate as evaluate_module

    beir = make_beir(tmp_path / "tinycase", n_docs=120, n_queries=6)
    monkeypatch.setattr("effir_surgery.eval_timer.MEASURE_SECONDS", 0.0)
    monkeypatch.setattr("effir_surgery.eval_timer.PROGRESS_SECONDS", 0.0)
    timed = _evaluate(tiny_folder, beir, tmp_path / "timed", batch_size=8)
    err = capsys.readouterr().err
    assert "on tinycase: 6 queries, 120 documents ..." in " ".join(err.split())  # rich wraps the long path
    lines = err.splitlines()
    estimates = [line for line in lines if "estimated total" in line]
    assert len(estimates) == 1
    assert re.fullmatch(
        r"tinycase: 120 documents, ~\d+ tokens each; " + ESTIMATE.format(unit="tokens/s"), estimates[0]
    )
    progress = [line for line in lines if line.startswith("tinycase: encoded ")]
    done = [int(re.match(r"tinycase: encoded (\d+)/120 documents, ETA \d\d:\d\d \(", p).group(1)) for p in progress]
    assert done and done == sorted(done) and done[-1] < 120  # batches of 8; no line for the finished corpus

    monkeypatch.setattr(evaluate_module, "_corpus_timer", lambda *args: contextlib.nullcontext())
    assert _evaluate(tiny_folder, beir, tmp_path / "untimed", batch_size=8) == timed


def test_small_corpus_gets_no_estimate(tiny_folder, tmp_path, capsys):
    """Two batches: the first is warm-up and the second ends the corpus, so there is nothing to estimate."""
    from conftest import make_beir

    beir = make_beir(tmp_path / "tinycase", n_docs=24, n_queries=4)
    _evaluate(tiny_folder, beir, tmp_path / "o", batch_size=16)
    err = capsys.readouterr().err
    assert "tinycase: 4 queries, 24 documents" in " ".join(err.split())
    assert "estimated total" not in err and "ETA" not in err


def test_corpus_timer_leaves_the_model_as_it_was(tiny_folder):
    from effir_surgery.eval_timer import CorpusTimer
    from effir_surgery.retrievers import load_dense, resolve_retriever

    model = load_dense(resolve_retriever(str(tiny_folder)), device="cpu")
    with CorpusTimer(model, "t", None, interactive=False) as timer:
        model.encode_document(["the cells of the brain", "court law"], batch_size=1)
        model.encode_query(["what is the risk"], batch_size=1)  # queries are not counted
    assert timer.done == 2 and timer.total == 2 and timer.mean_tokens > 0
    assert "encode_document" not in vars(model) and not model._forward_hooks
