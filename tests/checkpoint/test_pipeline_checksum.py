"""The encoder inside a saved pipeline is checksummed and validated like a checkpoint folder
(issue #12.3 and #12.4): a flipped bit or a hostile blob is an error at load, never silently
different vectors, and nothing is built from a config that does not fit its weights."""
import random
import warnings

import numpy as np
import pytest
import spacy
import srsly
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from spacy_electra.checkpoint.blob import (
    _checksum, deserialize_windowed_encoder, serialize_windowed_encoder,
)
from spacy_electra.checkpoint import CheckpointError, load_checkpoint
from spacy_electra.torch_model import ElectraEncoder
from spacy_electra.checkpoint import read_vocabulary
from spacy_electra.torch_model.windowed import WindowedEncoder

from ..conftest import trf_config, make_hf_checkpoint

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "ckpt"
    make_hf_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def blob(checkpoint):
    module = WindowedEncoder(load_checkpoint(checkpoint, kind="encoder"), read_vocabulary(checkpoint))
    return serialize_windowed_encoder(module)


def resign(msg):
    """A hostile blob whose checksum matches: validation, not the checksum, must stop it."""
    msg["sha256"] = _checksum(msg)
    return srsly.msgpack_dumps(msg)


@pytest.fixture
def never_built(monkeypatch):
    def refuse(self, config):
        raise AssertionError("the encoder was built from a blob that should have been refused")

    monkeypatch.setattr(ElectraEncoder, "__init__", refuse)


def test_blob_round_trips_exactly(blob, checkpoint):
    module = deserialize_windowed_encoder(None, blob, CPU)
    reference = load_checkpoint(checkpoint, kind="encoder").state_dict()
    assert all(torch.equal(module.encoder.state_dict()[k], v) for k, v in reference.items())


def test_every_sampled_bit_flip_is_an_error(blob):
    """Flips in the msgpack framing, the config, the vocabulary, the safetensors header and
    the tensor data: each one fails to load, none gives a silently different encoder."""
    rng = random.Random(0)
    head = list(range(0, 2000 * 8, 7))  # framing, config, vocab: dense
    rest = rng.sample(range(2000 * 8, len(blob) * 8), 300)  # weights: sampled
    for bit in head + rest:
        data = bytearray(blob)
        data[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CheckpointError):
            deserialize_windowed_encoder(None, bytes(data), CPU)


def test_flipped_weight_bit_names_the_checksum(blob):
    data = bytearray(blob)
    data[-100] ^= 0x10
    with pytest.raises(CheckpointError, match="checksum of the ELECTRA encoder in this pipeline does not match"):
        deserialize_windowed_encoder(None, bytes(data), CPU)


def test_blob_without_checksum_is_refused(blob):
    """Every blob spacy-electra writes carries its checksum; one without is not trusted."""
    msg = srsly.msgpack_loads(blob)
    del msg["sha256"]
    with pytest.raises(CheckpointError, match="checksum .* does not match"):
        deserialize_windowed_encoder(None, srsly.msgpack_dumps(msg), CPU)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["config"].update(vocab_size=100_000_000), r"embeddings\.word\.weight: weights \(\d+, 16\) vs config \(100000000, 16\)"),
        (lambda m: m["config"].update(num_hidden_layers=1_000_000), "has 2 layers of weights but its config says 1000000"),
        (lambda m: m["config"].update(num_attention_heads=0), "num_attention_heads=0 must be between 1"),
        (lambda m: m["config"].update(layer_norm_eps=-1.0), "layer_norm_eps=-1.0 must be a number"),
        (lambda m: m["vocab"].extend(["zz1", "zz2"]), r"has \d+ pieces but the model's vocab_size is"),
        (lambda m: m.pop("weights"), "malformed: missing key 'weights'"),
        (lambda m: m.update(vocab="abc"), "have the wrong type"),
        (lambda m: m["tokenizer"].update(strip_accents="no"), "malformed"),
    ],
)
def test_hostile_blob_is_refused_before_building(blob, never_built, edit, message):
    msg = srsly.msgpack_loads(blob)
    edit(msg)
    data = resign(msg) if "weights" in msg and isinstance(msg["vocab"], list) else srsly.msgpack_dumps(msg)
    with pytest.raises(CheckpointError, match=message):
        deserialize_windowed_encoder(None, data, CPU)


@pytest.mark.parametrize("bad", [float("nan"), 7])
def test_non_finite_or_integer_weights_in_blob_are_refused(blob, bad):
    msg = srsly.msgpack_loads(blob)
    state = load_safetensors(msg["weights"])
    if isinstance(bad, float):
        state["layers.0.output.weight"][0, 0] = bad
        message = r"NaN or infinite values in layers\.0\.output\.weight"
    else:
        state["layers.0.output.weight"] = state["layers.0.output.weight"].to(torch.int32) + bad
        message = r"non-float weights: layers\.0\.output\.weight \(I32\)"
    msg["weights"] = save_safetensors(state)
    with pytest.raises(CheckpointError, match=message):
        deserialize_windowed_encoder(None, resign(msg), CPU)


def test_flipped_bit_in_saved_pipeline_fails_at_spacy_load(checkpoint, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint))})
    nlp.initialize()
    expected = nlp("the new cafe in paris")._.trf_data.model_output.last_hidden_state
    nlp.to_disk(tmp_path / "p")
    model_file = tmp_path / "p" / "electra_transformer" / "model"
    assert model_file.exists()
    again = spacy.load(tmp_path / "p")
    np.testing.assert_array_equal(again("the new cafe in paris")._.trf_data.model_output.last_hidden_state, expected)
    data = bytearray(model_file.read_bytes())
    data[len(data) - 200] ^= 0x04  # inside the last tensor's float data
    model_file.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="checksum"):
            spacy.load(tmp_path / "p")
