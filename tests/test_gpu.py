"""GPU readiness: every command that can start GPU work says, in one line and before any work,
what the machine lacks (a CUDA torch, a visible GPU, CuPy). The machine running the suite has a
CPU torch; the other cases are made by patching what torch and CuPy report."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from spacy_electra import gpu
from spacy_electra.cli import app
from spacy_electra.gpu import GPUNotReady, gpu_problem, require_gpu


@pytest.fixture
def cpu_torch(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)


@pytest.fixture
def cuda_torch(monkeypatch):
    """A CUDA 12.8 torch with one visible GPU and CuPy installed."""
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(gpu, "_cupy_version", lambda: "13.6.0")


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, text
    return lines[0]


def test_the_cpu_is_always_ready(cpu_torch):
    assert gpu_problem(-1) is None
    require_gpu(-1)


def test_a_cpu_build_of_torch_names_the_cuda_build_to_install(cpu_torch):
    problem = gpu_problem(0)
    assert "is a CPU build" in problem and "--index-url https://download.pytorch.org/whl/cu" in problem
    assert "-c constraints.txt" in problem and "\n" not in problem
    with pytest.raises(GPUNotReady, match="CPU build"):
        require_gpu(0)


def test_no_visible_gpu_no_such_gpu_and_no_cupy(cuda_torch, monkeypatch):
    assert gpu_problem(0) is None
    assert "only 1 GPU(s) are visible" in gpu_problem(1)
    monkeypatch.setattr(gpu, "_cupy_version", lambda: None)
    assert "pip install cupy-cuda12x" in gpu_problem(0) and "CUDA 12.8" in gpu_problem(0)
    assert gpu_problem(0, need_cupy=False) is None  # pretraining needs torch alone
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "sees no GPU" in gpu_problem(0, need_cupy=False) and "nvidia-smi" in gpu_problem(0)


def test_check_gpu_command(cpu_torch):
    failed = CliRunner().invoke(app, ["check-gpu", "--gpu-id", "0"])
    assert failed.exit_code == 1 and "CPU build" in one_error_line(failed.output)
    cpu = CliRunner().invoke(app, ["check-gpu", "--gpu-id", "-1"])
    assert cpu.exit_code == 0 and "nothing to check" in cpu.output


def test_check_gpu_command_on_a_ready_machine(cuda_torch, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Some GPU")
    monkeypatch.setattr("spacy.require_gpu", lambda gpu_id: True)
    ready = CliRunner().invoke(app, ["check-gpu", "--gpu-id", "0"])
    assert ready.exit_code == 0 and ready.output.startswith("GPU 0 ready: Some GPU") and "CuPy 13.6.0" in ready.output
    monkeypatch.setattr(gpu, "_cupy_version", lambda: None)
    assert CliRunner().invoke(app, ["check-gpu", "--gpu-id", "0", "--torch-only"]).exit_code == 0


def test_check_data_names_missing_data_and_the_gpu_in_one_run(cpu_torch, tmp_path):
    result = CliRunner().invoke(app, ["check-data", str(tmp_path / "nowhere"), "--gpu-id", "0"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and "nowhere" in errors[0] and "CPU build" in errors[1]


def test_evaluate_and_annotate_refuse_before_any_work(cpu_torch, tmp_path):
    dev = tmp_path / "dev.spacy"
    dev.write_bytes(b"")
    evaluated = CliRunner().invoke(app, ["evaluate", str(tmp_path / "pipeline"), "--dev", f"ner={dev}",
                                         "--output", str(tmp_path / "metrics"), "--gpu-id", "0"])
    assert evaluated.exit_code == 1 and "CPU build" in one_error_line(evaluated.output)
    assert not (tmp_path / "metrics").exists()
    import spacy

    spacy.blank("en").to_disk(tmp_path / "pipeline")  # annotate names a missing pipeline first
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"text": "Hello ."}) + "\n")
    annotated = CliRunner().invoke(app, ["annotate", str(tmp_path / "pipeline"), str(texts), str(tmp_path / "out"),
                                         "--gpu-id", "0"])
    assert annotated.exit_code == 1 and "CPU build" in one_error_line(annotated.output)


def test_spacy_on_the_gpu_with_a_cpu_torch_is_named_when_the_encoder_is_placed(monkeypatch):
    """CuPy present, torch a CPU build: spaCy's `require_gpu` succeeds, so the encoder's shim is
    where the mismatch shows (its device is CUDA); the message names the CUDA torch to install."""
    from spacy_electra.layers.shim import ElectraShim

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(ElectraShim, "device", property(lambda self: torch.device("cuda", 0)))
    shim = ElectraShim(None)
    with pytest.raises(GPUNotReady, match="CPU build"):
        shim.module = torch.nn.Linear(2, 2)


def test_pretraining_on_cuda_names_the_cuda_torch_to_install(cpu_torch):
    from spacy_electra.pretrain.trainer import PretrainError, resolve_device

    with pytest.raises(PretrainError, match=r"training.device is 'cuda'.*CPU build.*--training.device cpu"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
