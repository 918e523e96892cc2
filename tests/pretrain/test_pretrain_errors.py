"""Pretraining failures through the command line: one line and status 1, the last good checkpoint
intact, no *.tmp left, an atomic export, a log without repeated steps after a resume; and a
schedule that scales with max_steps."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spacy_electra.atomic import atomic_folder
from spacy_electra.cli import app
from spacy_electra.pretrain import load_config
from spacy_electra.pretrain.optim import build_scheduler
from spacy_electra.pretrain.trainer import format_metrics

from .test_pretrain_training import TINY, data, overrides  # noqa: F401  (data is a fixture)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(data: Path, out: Path, *extra: str, resume: bool = False, verbose: bool = False, **settings):
    args = (["--verbose"] if verbose else []) + ["pretrain", str(TINY), "--output", str(out)]
    args += ["--resume"] if resume else []
    for key, value in overrides(data, **settings).items():
        args += [f"--{key}", str(value)]
    return CliRunner().invoke(app, args + list(extra))


def error_lines(output: str):
    return [line for line in output.splitlines() if line.startswith("Error:")]


def leftovers(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


def logged_steps(out: Path):
    return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("training.max_steps", "abc", "training.max_steps='abc' must be an integer"),
        ("training.learning_rate", "fast", "training.learning_rate='fast' must be a number"),
        ("training.checkpoint_every", "0", "training.checkpoint_every=0 must be a positive number of steps"),
        ("training.log_every", "0", "training.log_every=0 must be a positive"),
        ("training.warmup_steps", "50", "training.warmup_steps=50 must be in [0, training.max_steps=8)"),
        ("training.warmup_fraction", "1.5", "training.warmup_fraction=1.5 must be in [0, 1)"),
        ("corpus.seq_length", "[1]", "corpus.seq_length=[1] must be an integer"),
    ],
)
def test_bad_settings_are_refused_in_one_line_naming_the_key(data, tmp_path, key, value, fragment):
    result = run_cli(data, tmp_path / "run", f"--{key}", value)
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result.output)
    assert line.startswith(f"Error: {fragment}") and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_verbose_shows_the_traceback(data, tmp_path):
    result = run_cli(data, tmp_path / "run", "--training.max_steps", "abc", verbose=True)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ConfigError" in result.output
    assert error_lines(result.output)[-1].startswith("Error: training.max_steps='abc'")
    late = run_cli(data, tmp_path / "run", "--verbose")
    assert late.exit_code == 1 and "put it before the command" in late.output


def test_full_disk_keeps_the_last_checkpoint_and_the_log_stays_monotonic(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = run_cli(data, out, **{"training.stop_after_steps": 4})
    assert first.exit_code == 0, first.output
    assert "step 1/8: the first step took" in first.output and "step 2/8 | gen_loss" in first.output
    assert "Stopped before max_steps" in first.output
    ckpt = out / "checkpoints" / "last.pt"
    good = ckpt.read_bytes()

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # half a file reaches the disk, then it is full
        real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(Path(f).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", full_disk)
    failed = run_cli(data, out, resume=True)
    assert failed.exit_code == 1, failed.output
    (line,) = error_lines(failed.output)
    assert line.startswith(f"Error: No space left on the device writing {ckpt}") and "--resume" in line
    assert "Traceback" not in failed.output
    assert ckpt.read_bytes() == good and torch.load(ckpt, weights_only=True)["step"] == 4
    assert leftovers(out) == []
    assert logged_steps(out) == [2, 4, 6, 8]  # steps 6 and 8 were logged before the save failed

    monkeypatch.setattr(torch, "save", real_save)
    resumed = run_cli(data, out, resume=True)
    assert resumed.exit_code == 0, resumed.output
    assert logged_steps(out) == [2, 4, 6, 8]  # not [2, 4, 6, 8, 6, 8]
    assert (out / "discriminator" / "model.safetensors").exists() and leftovers(out) == []
    assert f"Wrote {out / 'discriminator'}, {out / 'generator'}" in resumed.output
    assert str(out / "train_log.jsonl") in resumed.output


def test_truncated_checkpoint_on_resume_is_one_line(data, tmp_path):
    out = tmp_path / "run"
    assert run_cli(data, out, **{"training.stop_after_steps": 4}).exit_code == 0
    ckpt = out / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    result = run_cli(data, out, resume=True)
    assert result.exit_code == 1
    (line,) = error_lines(result.output)
    assert line.startswith(f"Error: --resume: {ckpt} is not a readable checkpoint") and "without --resume" in line
    assert "Traceback" not in result.output


def test_failed_export_leaves_no_partial_model(data, tmp_path, monkeypatch):
    import spacy_electra.checkpoint.writer as checkpoint

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    out = tmp_path / "run"
    result = run_cli(data, out)
    assert result.exit_code == 1
    (line,) = error_lines(result.output)
    assert line.startswith(f"Error: Could not export {out / 'discriminator'} (No space left on device)")
    assert not (out / "discriminator").exists() and not (out / "generator").exists()
    assert leftovers(out) == []
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
    monkeypatch.undo()
    again = run_cli(data, out, resume=True)  # the fix the message names
    assert again.exit_code == 0, again.output
    assert (out / "generator" / "config.json").exists() and logged_steps(out) == [2, 4, 6, 8]


def test_atomic_folder_replaces_whole_or_keeps_the_old(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "old.txt").exists()
    with atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == ["new.txt"]


@pytest.mark.parametrize("max_steps", [1000, 20000])
def test_schedule_peaks_at_the_warmup_fraction_and_ends_near_zero(max_steps):
    """pretrain_small.cfg with --training.max_steps overridden: warmup is 1% of the new length."""
    config = load_config(ROOT / "configs" / "pretrain_small.cfg", {"training.max_steps": max_steps})
    assert config.training.warmup == max_steps // 100
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.training.learning_rate)
    scheduler = build_scheduler(optimizer, config.training)
    rates = []
    for _ in range(max_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    peak = max(range(max_steps), key=rates.__getitem__)
    assert abs(peak - max_steps // 100) <= 1
    assert rates[peak] > 0.98 * config.training.learning_rate
    assert rates[-1] < 0.002 * config.training.learning_rate
    assert rates[0] < 0.2 * config.training.learning_rate


def test_warmup_steps_takes_precedence_over_the_fraction():
    config = load_config(TINY, {"training.max_steps": 100, "training.warmup_steps": 7})
    assert config.training.warmup == 7
    assert load_config(TINY, {"training.max_steps": 100}).training.warmup == 10  # warmup_fraction 0.1


def test_progress_line_says_step_loss_prior_speed_and_eta():
    metrics = dict(step=50, max_steps=1000, gen_loss=5.0, gen_acc=0.1, disc_loss=0.3, prior_loss=0.35,
                   disc_acc=0.85, prior_acc=0.86, replaced_frac=0.14, disc_recall=0.01, tokens_per_s=2000.0,
                   seconds_per_step=0.5, eta_seconds=475.0, lr=1e-4)
    line = format_metrics(metrics)
    for part in ("step 50/1000", "disc_loss 0.3000 (prior 0.3500)", "disc_acc 0.8500 (prior 0.8600)",
                 "2 steps/s", "ETA 7m55s"):
        assert part in line, (part, line)
    assert "ETA 2h46m" in format_metrics({**metrics, "eta_seconds": 9960.0})


def test_a_foreign_file_as_last_pt_is_one_line(data, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    torch.save({"weights": torch.zeros(2)}, out / "checkpoints" / "last.pt")
    result = run_cli(data, out, resume=True)
    assert result.exit_code == 1
    (line,) = error_lines(result.output)
    assert "lacks examples, model, optimizer, rng, scaler, scheduler, step" in line
