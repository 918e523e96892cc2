"""Hostile or broken checkpoint folders are refused before they cost anything (issue #12.3).

Each case asserts the error names the file and the problem, and (where a config could make us
allocate) that the model is never built: ``ElectraEncoder.__init__`` is patched to fail."""
import json
import os
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spacy_electra.checkpoint import CheckpointError, load_checkpoint

from spacy_electra.torch_model import ElectraEncoder
from spacy_electra.checkpoint import read_vocabulary

from ..conftest import BASE_PIECES, make_hf_checkpoint


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "src"
    make_hf_checkpoint(path)
    return path


@pytest.fixture
def ckpt(source, tmp_path):
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(source, path)
    return path


@pytest.fixture
def never_built(monkeypatch):
    def refuse(self, config):
        raise AssertionError("the model was built from a config that should have been refused")

    monkeypatch.setattr(ElectraEncoder, "__init__", refuse)


def edit_config(path: Path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def finishes(fn, seconds: float = 10.0):
    """Run ``fn`` in a thread; the result or exception, or a failure if it hangs (a FIFO)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a FIFO or endless file?)"
    return outcome


# -- config values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"vocab_size": 100_000_000}, r"word_embeddings\.weight: weights \(\d+, 16\) vs config \(100000000, 16\)"),
        ({"vocab_size": 1e8}, r"vocab_size=100000000\.0 must be an integer"),
        ({"num_hidden_layers": 1_000_000}, r"num_hidden_layers=1000000 but the weights hold 2 layers"),
        ({"num_attention_heads": 0}, r"num_attention_heads=0 must be between 1"),
        ({"layer_norm_eps": 0}, r"layer_norm_eps=0 must be positive"),
        ({"layer_norm_eps": -1e-12}, r"layer_norm_eps=-1e-12 must be a number"),
        ({"layer_norm_eps": float("nan")}, r"layer_norm_eps=nan must be a number"),
        ({"hidden_size": 33}, r"hidden_size \(33\) must be divisible by num_attention_heads"),
        ({"max_position_embeddings": 2**40}, r"max_position_embeddings=1099511627776 must be between"),
        ({"intermediate_size": "48"}, r"intermediate_size='48' must be an integer"),
        ({"pad_token_id": 10**6}, r"pad_token_id=1000000 must be an integer in \[0, vocab_size"),
        ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob=1\.5 must be a number in \[0\.0, 1\.0\)"),
        ({"hidden_act": ["gelu"]}, r"hidden_act=\['gelu'\] must be a string"),
        ({"model_type": "gpt2"}, r"describes a 'gpt2' model; spacy-electra loads ELECTRA and BERT"),
    ],
)
def test_bad_config_values_fail_fast_without_building(ckpt, never_built, changes, message):
    edit_config(ckpt, **changes)
    with pytest.raises(CheckpointError, match=message) as err:  # never_built: before any module exists
        load_checkpoint(ckpt)
    assert "config.json" in str(err.value)


def test_huge_config_cannot_allocate(ckpt):
    """Without the patch: the error comes before a 1e8-row embedding (6 GB at width 16) exists."""
    import tracemalloc

    edit_config(ckpt, vocab_size=100_000_000, embedding_size=16)
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="vocab_size"):
        load_checkpoint(ckpt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20


@pytest.mark.parametrize(
    "text, message",
    [
        (b"[" * 100_000, r"config\.json is not valid JSON \(RecursionError"),
        (b'{"vocab_size": 12', r"config\.json is not valid JSON"),
        (b"[1, 2]", r"config\.json holds a JSON list, not an object"),
        ('{"hidden_act": "gelu", "x": "\xe9"}'.encode("latin-1"), r"config\.json is not UTF-8 text"),
    ],
)
def test_malformed_config_json_is_one_error_naming_the_file(ckpt, never_built, text, message):
    (ckpt / "config.json").write_bytes(text)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(ckpt)


# -- files that are not regular files or are too large -----------------------------------------
def test_fifo_config_is_refused_without_blocking(ckpt):
    (ckpt / "config.json").unlink()
    os.mkfifo(ckpt / "config.json")
    outcome = finishes(lambda: load_checkpoint(ckpt))
    assert isinstance(outcome.get("error"), CheckpointError)
    assert "config.json is not a regular file" in str(outcome["error"])


def test_config_symlinked_to_dev_zero_is_refused(ckpt):
    (ckpt / "config.json").unlink()
    (ckpt / "config.json").symlink_to("/dev/zero")
    outcome = finishes(lambda: load_checkpoint(ckpt))
    assert isinstance(outcome.get("error"), CheckpointError)
    assert "not a regular file" in str(outcome["error"])


def test_weights_fifo_is_refused_without_blocking(ckpt):
    (ckpt / "model.safetensors").unlink()
    os.mkfifo(ckpt / "model.safetensors")
    outcome = finishes(lambda: load_checkpoint(ckpt))
    assert "model.safetensors is not a regular file" in str(outcome.get("error"))


def test_oversized_config_is_refused_unread(ckpt):
    with open(ckpt / "config.json", "r+b") as handle:
        handle.truncate(64 * 2**20)  # sparse: large by size, nothing written
    with pytest.raises(CheckpointError, match=r"config\.json is 67,108,864 bytes, more than the"):
        load_checkpoint(ckpt)


def test_header_length_beyond_the_file_is_refused(ckpt, never_built):
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = (2**60).to_bytes(8, "little")
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt: its header claims"):
        load_checkpoint(ckpt)


def test_header_offsets_beyond_the_data_are_refused(ckpt, never_built):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(ckpt)


# -- sharded checkpoints -------------------------------------------------------------------------
def shard(ckpt: Path, outside_name: str):
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    save_file(state, ckpt / "model-00001-of-00001.safetensors")
    weight_map = {k: "model-00001-of-00001.safetensors" for k in state}
    weight_map[next(iter(state))] = outside_name
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("name", ["../x.safetensors", "/tmp/x.safetensors", "sub/../../x.safetensors", "x.bin"])
def test_shard_names_must_stay_in_the_folder(ckpt, monkeypatch, name):
    import spacy_electra.checkpoint.reader as checkpoint

    (ckpt.parent / "x.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes())
    shard(ckpt, name)
    read = []
    monkeypatch.setattr(checkpoint, "load_file", lambda path: read.append(path))
    with pytest.raises(CheckpointError, match=r"names shard .* not a \.safetensors file in .*Refusing"):
        load_checkpoint(ckpt)
    assert read == []


def test_sharded_checkpoint_still_loads(ckpt, source):
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    keys = sorted(state)
    save_file({k: state[k] for k in keys[::2]}, ckpt / "model-00001-of-00002.safetensors")
    save_file({k: state[k] for k in keys[1::2]}, ckpt / "model-00002-of-00002.safetensors")
    weight_map = {k: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, k in enumerate(keys)}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = load_checkpoint(ckpt).state_dict()
    reference = load_checkpoint(source).state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_index_without_weight_map_names_the_file(ckpt):
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match=r"index\.json is malformed: missing key 'weight_map'"):
        load_checkpoint(ckpt)


# -- tensor values ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(ckpt, never_built, value):
    state = load_file(ckpt / "model.safetensors")
    state["electra.encoder.layer.1.output.dense.weight"][3, 4] = value
    save_file(state, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in electra\.encoder\.layer\.1\.output\.dense\.weight"):
        load_checkpoint(ckpt)


def test_integer_weights_are_refused_before_reading(ckpt, never_built):
    state = load_file(ckpt / "model.safetensors")
    name = "electra.embeddings.word_embeddings.weight"
    state[name] = (state[name] * 100).to(torch.int32)
    save_file(state, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"non-float weights: {name} \(I32\)"):
        load_checkpoint(ckpt)


def test_integer_weights_in_bin_are_refused(ckpt, never_built):
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    state["electra.embeddings.LayerNorm.weight"] = torch.ones(16, dtype=torch.int64)
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"non-float weights: electra\.embeddings\.LayerNorm\.weight \(I64\)"):
        load_checkpoint(ckpt)


def test_half_precision_weights_are_cast_with_a_warning(ckpt, source):
    state = load_file(ckpt / "model.safetensors")
    save_file({k: v.half() for k, v in state.items()}, ckpt / "model.safetensors")
    with pytest.warns(UserWarning, match="stores weights as F16; they are converted to float32"):
        model = load_checkpoint(ckpt)
    reference = load_checkpoint(source).state_dict()
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    assert torch.allclose(model.state_dict()["layers.0.output.weight"], reference["layers.0.output.weight"], atol=1e-3)


# -- vocabulary ---------------------------------------------------------------------------------
def test_vocab_larger_than_vocab_size_is_an_error_at_load(ckpt):
    (ckpt / "vocab.txt").write_text("\n".join(BASE_PIECES + ["extra1", "extra2"]) + "\n")
    with pytest.raises(CheckpointError, match=rf"vocab\.txt has {len(BASE_PIECES) + 2} pieces but the model's vocab_size is {len(BASE_PIECES)}"):
        read_vocabulary(ckpt, vocab_size=len(BASE_PIECES))
    assert read_vocabulary(ckpt, vocab_size=len(BASE_PIECES) + 2).vocab_size == len(BASE_PIECES) + 2


def test_vocab_fifo_and_bad_tokenizer_settings(ckpt):
    (ckpt / "tokenizer_config.json").write_text('{"do_lower_case": "yes"}')
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json is malformed: do_lower_case"):
        read_vocabulary(ckpt)
    (ckpt / "vocab.txt").unlink()
    os.mkfifo(ckpt / "vocab.txt")
    outcome = finishes(lambda: read_vocabulary(ckpt))
    assert "vocab.txt is not a regular file" in str(outcome.get("error"))


@pytest.mark.parametrize("kind", ["encoder", "discriminator", "generator"])
@pytest.mark.parametrize("embedding_size", [16, 32])
def test_shapes_from_config_match_the_built_model(kind, embedding_size):
    """The arithmetic that validates a config without building it agrees with the real modules."""
    from spacy_electra.torch_model import ElectraConfig
    from spacy_electra.torch_model.encoder import MODEL_CLASSES
    from spacy_electra.checkpoint.files import our_shapes

    config = ElectraConfig(vocab_size=50, embedding_size=embedding_size, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=48, max_position_embeddings=40)
    built = {k: tuple(v.shape) for k, v in MODEL_CLASSES[kind](config).state_dict().items()}
    assert our_shapes(config, kind) == built


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("vocab.txt", b"[PAD]\n\xff\xfe\n", r"vocab\.txt is not UTF-8 text"),
        ("vocab.txt", b"a\nb\n", r"vocab\.txt: The vocabulary lacks \[PAD\]"),
        ("tokenizer_config.json", b"[true]", r"tokenizer_config\.json holds a JSON list"),
    ],
)
def test_bad_vocabulary_files_are_one_error_naming_the_file(ckpt, name, content, message):
    (ckpt / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_vocabulary(ckpt)
