"""Bad checkpoints fail loudly with a message that names the cause; pickles never execute."""
import json
import os
from pathlib import Path

import pytest
import torch

from spacy_electra.checkpoint import CheckpointError, load_checkpoint

from ..conftest import make_hf_checkpoint

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "spacy_electra_payload_ran"


class Payload:
    """Unpickling this would create MARKER; a safe loader must refuse before that."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def test_pickle_with_code_payload_is_refused_and_never_runs(tmp_path):
    make_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    state = {"electra.embeddings.word_embeddings.weight": torch.zeros(2, 2), "evil": Payload()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    MARKER.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="never executed"):
        load_checkpoint(tmp_path)
    assert not MARKER.exists()


def test_truncated_safetensors(tmp_path):
    make_hf_checkpoint(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path)


def test_truncated_bin(tmp_path):
    hf = make_hf_checkpoint(tmp_path / "src")
    hf.save_pretrained(tmp_path / "bin", safe_serialization=False)
    weights = tmp_path / "bin" / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "bin")


def test_wrong_shape_names_the_tensor(tmp_path):
    make_hf_checkpoint(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 40
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight: weights \(48, 32\) vs config \(40, 32\)"):
        load_checkpoint(tmp_path)


def test_missing_layer_is_named(tmp_path):
    make_hf_checkpoint(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing weights: .*encoder\.layer\.2"):
        load_checkpoint(tmp_path)


def test_unexpected_key_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    make_hf_checkpoint(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["electra.encoder.mystery.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected weights: encoder.mystery.weight"):
        load_checkpoint(tmp_path)


def test_old_position_ids_buffer_and_tf_names_are_accepted(tmp_path):
    from safetensors.torch import load_file, save_file

    make_hf_checkpoint(tmp_path)
    reference = load_checkpoint(tmp_path).state_dict()
    state = load_file(tmp_path / "model.safetensors")
    state["electra.embeddings.position_ids"] = torch.arange(64)[None]
    state["electra.embeddings.LayerNorm.gamma"] = state.pop("electra.embeddings.LayerNorm.weight")
    save_file(state, tmp_path / "model.safetensors")
    loaded = load_checkpoint(tmp_path).state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_no_weights_and_no_config(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="No weights"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(_empty(tmp_path))


def _empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_uncached_hub_id_explains_how_to_provide_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="local folder") as err:
        load_checkpoint("google/electra-small-discriminator")
    assert "huggingface-cli download google/electra-small-discriminator" in str(err.value)


def test_kind_mismatch(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForMaskedLM")
    with pytest.raises(CheckpointError, match="holds an ELECTRA generator"):
        load_checkpoint(tmp_path, kind="discriminator")
