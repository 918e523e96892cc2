"""End-to-end pretraining runs on a tiny model: CLI, resume after a kill, torchrun, export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer import Typer
from typer.testing import CliRunner

from spacy_electra.checkpoint import load_checkpoint
from spacy_electra.pretrain import load_config, pretrain
from spacy_electra.pretrain.corpus import build_corpus

from ..conftest import trf_config, padded_batch, write_vocab

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain_tiny.cfg"
WORDS = "the a of and to in is was he she it new york london paris city cafe".split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A vocab and a packed corpus shared by every run in this module."""
    root = tmp_path_factory.mktemp("pretrain_data")
    write_vocab(root / "vocab")
    rng = np.random.default_rng(0)
    with open(root / "text.txt", "w") as f:
        for _ in range(80):
            for _ in range(rng.integers(1, 6)):
                f.write(" ".join(rng.choice(WORDS, size=rng.integers(3, 25))) + "\n")
            f.write("\n")
    build_corpus([root / "text.txt"], root / "vocab", root / "packed", seq_length=32, workers=1)
    return root


def overrides(data: Path, **extra):
    values = {"corpus.vocab": str(data / "vocab"), "corpus.cache": str(data / "packed"),
              "training.max_steps": 8, "training.checkpoint_every": 4, "training.log_every": 2}
    values.update(extra)
    return values


def weights(run: Path, kind: str = "discriminator"):
    return load_file(str(run / kind / "model.safetensors"))


def max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def cli_app() -> Typer:
    from spacy_electra.cli import app

    return app


def test_cli_run_logs_checkpoints_and_exports(data, tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", str(TINY), "--output", str(out)]
    for key, value in overrides(data).items():
        args += [f"--{key}", str(value)]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    import json

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8]
    for key in ("gen_loss", "disc_loss", "disc_acc", "prior_acc", "replaced_frac", "disc_auc", "tokens_per_s", "lr"):
        assert all(np.isfinite(r[key]) for r in log), key
    assert 0.02 < log[-1]["replaced_frac"] < 0.2
    assert (out / "checkpoints" / "last.pt").exists() and not list((out / "checkpoints").glob("*.tmp*"))
    assert load_config(out / "config.cfg").training.max_steps == 8
    bad = CliRunner().invoke(cli_app(), args + ["--training.precision", "fp16"])
    assert bad.exit_code == 1 and "fp16" in bad.output


def test_export_loads_in_transformers_with_equal_outputs(data, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    pretrain(load_config(TINY, overrides(data, **{"training.max_steps": 3})), out)
    ids, mask, types = padded_batch(60, lengths=(12, 7, 3))
    disc = load_checkpoint(out / "discriminator").eval()
    hf_disc = transformers.ElectraForPreTraining.from_pretrained(out / "discriminator").eval()
    gen = load_checkpoint(out / "generator").eval()
    hf_gen = transformers.ElectraForMaskedLM.from_pretrained(out / "generator").eval()
    with torch.no_grad():
        ours, theirs = disc(ids, mask, types), hf_disc(ids, attention_mask=mask, token_type_ids=types).logits
        active = mask.bool()
        assert torch.allclose(ours[active], theirs[active], atol=1e-5)
        ours, theirs = gen(ids, mask, types), hf_gen(ids, attention_mask=mask, token_type_ids=types).logits
        assert torch.allclose(ours[active], theirs[active], atol=1e-4)
    # the exported pair still shares its embeddings, and the generator is the smaller network
    assert torch.equal(disc.embeddings.word.weight, gen.embeddings.word.weight)
    assert gen.config.hidden_size == disc.config.hidden_size // 2
    mlm = tmp_path / "mlm"
    pretrain(load_config(TINY, overrides(data, **{"training.max_steps": 2, "model.objective": "mlm"})), mlm)
    hf_mlm = transformers.ElectraForMaskedLM.from_pretrained(mlm / "mlm").eval()
    assert hf_mlm.config.hidden_size == disc.config.hidden_size
    with torch.no_grad():
        ours = load_checkpoint(mlm / "mlm").eval()(ids, mask, types)
        theirs = hf_mlm(ids, attention_mask=mask, token_type_ids=types).logits
    assert torch.allclose(ours[active], theirs[active], atol=1e-4)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from spacy_electra.pretrain import load_config, pretrain
    config = load_config(sys.argv[1], {k: v for k, v in zip(sys.argv[3::2], map(eval, sys.argv[4::2]))})
    kill_at = config.training.max_steps // 2 + 1  # after the mid-run checkpoint, mid-interval
    def crash(step, metrics):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    pretrain(config, sys.argv[2], callbacks=[crash])
""")


def test_resume_after_kill_matches_an_uninterrupted_run(data, tmp_path):
    settings = overrides(data, **{"training.max_steps": 8, "training.checkpoint_every": 4})
    straight = tmp_path / "straight"
    pretrain(load_config(TINY, settings), straight)
    broken = tmp_path / "broken"
    args = [sys.executable, "-c", KILL_SCRIPT, str(TINY), str(broken)]
    for key, value in settings.items():
        args += [key, repr(value)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (broken / "discriminator").exists()
    state = torch.load(broken / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4
    cli = ["pretrain", str(TINY), "--output", str(broken), "--resume"]
    for key, value in settings.items():
        cli += [f"--{key}", str(value)]
    result = CliRunner().invoke(cli_app(), cli)
    assert result.exit_code == 0, result.output
    for kind in ("discriminator", "generator"):
        assert max_diff(weights(straight, kind), weights(broken, kind)) < 1e-6


def assert_two_processes_equal_one(settings: dict, tmp_path: Path) -> Path:
    """Pretrain TINY with ``settings`` in one process with 2 micro-batches and under torchrun
    in 2 processes: both exported models must agree. Returns the one-process output."""
    single = tmp_path / "single"
    pretrain(load_config(TINY, {**settings, "training.grad_accumulation": 2}), single)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spacy_electra.pretrain", "pretrain", str(TINY), "--output", str(tmp_path / "ddp")]
    for key, value in settings.items():
        cmd += [f"--{key}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for kind in ("discriminator", "generator"):
        assert max_diff(weights(single, kind), weights(tmp_path / "ddp", kind)) < 1e-5
    return single


def test_torchrun_two_processes_equal_one_process_same_global_batch(data, tmp_path):
    settings = overrides(data, **{"training.max_steps": 6, "training.batch_size": 8})
    single = assert_two_processes_equal_one(settings, tmp_path)
    # and the split really mattered: a different seed gives different weights
    other = tmp_path / "other"
    pretrain(load_config(TINY, {**settings, "training.grad_accumulation": 2, "training.seed": 1}), other)
    assert max_diff(weights(single), weights(other)) > 1e-3


def test_bf16_autocast_runs_on_cpu(data, tmp_path):
    metrics = pretrain(load_config(TINY, overrides(data, **{"training.max_steps": 2, "training.precision": "bf16"})),
                       tmp_path / "bf16")
    assert np.isfinite(metrics["gen_loss"]) and np.isfinite(metrics["disc_loss"])


def test_export_is_usable_as_checkpoint_of_the_spacy_component(data, tmp_path):
    spacy = pytest.importorskip("spacy")
    pytest.importorskip("spacy_electra.pipes.transformer")
    out = tmp_path / "run"
    pretrain(load_config(TINY, overrides(data, **{"training.max_steps": 2})), out)
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer",
                 config={"model": trf_config(str(out / "discriminator"), window=32, stride=24)})
    nlp.initialize()
    doc = nlp("new york is a city")
    hidden = doc._.trf_data.model_output.last_hidden_state
    assert hidden.shape[-1] == load_config(TINY).discriminator_config(60).hidden_size


def test_the_discriminator_auc_from_histograms_equals_the_rank_auc():
    """disc_auc (logged beside the loss and its prior) from per-bin counts that add up across
    micro-batches and processes: equal to the exact rank AUC when scores fall in distinct bins,
    ties in one bin counted half (as the rank AUC counts tied scores)."""
    from spacy_electra.pretrain.objective import AUC_BINS, histogram_auc, score_histograms

    def rank_auc(scores, labels):
        pos = [s for s, y in zip(scores, labels) if y]
        neg = [s for s, y in zip(scores, labels) if not y]
        return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))

    probs = torch.tensor([0.015, 0.235, 0.455, 0.605, 0.805, 0.995, 0.305, 0.705])  # 8 distinct bins
    labels = torch.tensor([False, True, False, True, False, True, True, False])
    logits = torch.logit(probs).reshape(2, 4)
    hist = score_histograms(logits, labels.reshape(2, 4), torch.ones(2, 4, dtype=torch.bool))
    assert hist.shape == (2 * AUC_BINS,) and hist.sum() == 8
    assert histogram_auc(hist[:AUC_BINS], hist[AUC_BINS:]) == pytest.approx(rank_auc(probs.tolist(), labels.tolist()))
    # padding is not counted; ties in one bin count half; one class only gives None
    on = torch.tensor([[True, True, True, True], [True, True, False, False]])
    hist = score_histograms(torch.zeros(2, 4), labels.reshape(2, 4), on)
    assert hist.sum() == 6 and histogram_auc(hist[:AUC_BINS], hist[AUC_BINS:]) == 0.5
    assert histogram_auc(hist[:AUC_BINS], torch.zeros(AUC_BINS)) is None


def test_the_log_shows_the_annealed_sampling_temperature(data, tmp_path):
    settings = overrides(data, **{"training.max_steps": 4, "model.sampling_temperature": 3.0,
                                  "model.sampling_temperature_steps": 4})
    pretrain(load_config(TINY, settings), tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [(line["step"], line["temperature"]) for line in lines] == [(2, 2.5), (4, 1.5)]  # steps 2 and 4 ran at T(1), T(3)
    plain = tmp_path / "plain"
    pretrain(load_config(TINY, overrides(data, **{"training.max_steps": 2})), plain)
    assert "temperature" not in (plain / "train_log.jsonl").read_text()
    # The MLM control of a config that anneals (configs/pretrain_cpu.cfg) samples nothing
    mlm = tmp_path / "mlm"
    pretrain(load_config(TINY, {**settings, "model.objective": "mlm", "training.max_steps": 2}), mlm)
    assert "temperature" not in (mlm / "train_log.jsonl").read_text()
