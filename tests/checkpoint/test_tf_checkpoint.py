"""Google TensorFlow ELECTRA checkpoints, read without TensorFlow (issue #26.2).

TensorFlow is the oracle: tests/fixtures/tf_electra holds a tiny checkpoint with ELECTRA's
variable names written by real TensorFlow (``make_fixture.py``), the values TensorFlow reads back
from it (``tf_values.npz``) and the logits TensorFlow computed (``expected.json``). TensorFlow is
not needed to run these tests."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_electra.checkpoint import CheckpointError, read_checkpoint, tf_checkpoint
from spacy_electra.checkpoint.convert_tf import convert_tf
from spacy_electra.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tf_electra"
MODEL = FIXTURE / "model"
PREFIX = MODEL / "model.ckpt-7"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
DISC_HEADS = EXPECTED["discriminator"]["heads"]  # 2: not hidden // 64, so it is given
ATOL = 1e-5


def tf_values():
    with np.load(FIXTURE / "tf_values.npz", allow_pickle=False) as values:
        return {name.replace("|", "/"): values[name] for name in values.files}


def inputs():
    return tuple(torch.tensor(EXPECTED[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float32), atol=ATOL, rtol=0)


# -- reading ----------------------------------------------------------------------------------
def test_the_fixture_is_a_training_checkpoint_with_optimizer_slots():
    num_shards, entries = tf_checkpoint.read_index(PREFIX.with_name(PREFIX.name + ".index"))
    assert num_shards == 1
    assert entries["global_step"].dtype_name == "int64" and entries["global_step"].shape == ()
    assert "electra/encoder/layer_0/attention/self/query/kernel/adam_m" in entries
    assert "generator_predictions/output_bias/adam_v" in entries


@pytest.mark.parametrize("model", ["discriminator", "generator"])
def test_tensors_equal_what_tensorflow_reads_back(model):
    described, state = tf_checkpoint.read_tf_model(PREFIX, model, num_attention_heads=DISC_HEADS if model == "discriminator" else None)
    values = tf_values()
    assert set(state) == set(described.names)
    for hf, (tf, transpose) in described.names.items():
        assert "adam" not in tf and tf != "global_step"
        expected = values[tf].T if transpose else values[tf]
        assert state[hf].dtype == torch.float32
        np.testing.assert_array_equal(state[hf].numpy(), expected, err_msg=hf)
    shared = described.names["electra.embeddings.word_embeddings.weight"][0]
    assert shared == "electra/embeddings/word_embeddings"  # the generator shares the discriminator's


def test_sizes_come_from_the_shapes_and_the_head_rule():
    _, entries = tf_checkpoint.read_index(PREFIX.with_name(PREFIX.name + ".index"))
    disc = tf_checkpoint.describe(PREFIX, entries, "discriminator", num_attention_heads=DISC_HEADS).config
    gen = tf_checkpoint.describe(PREFIX, entries, "generator").config
    assert (disc.vocab_size, disc.embedding_size, disc.max_position_embeddings, disc.type_vocab_size) == (30, 8, 12, 2)
    assert (disc.hidden_size, disc.num_hidden_layers, disc.intermediate_size, disc.num_attention_heads) == (16, 2, 24, 2)
    assert (gen.hidden_size, gen.num_hidden_layers, gen.intermediate_size, gen.num_attention_heads) == (12, 1, 24, 1)
    assert gen.has_projection and disc.has_projection
    assert tf_checkpoint.describe(PREFIX, entries).config.num_attention_heads == 1  # max(1, 16 // 64)


@pytest.mark.parametrize("where", [MODEL, PREFIX, PREFIX.with_name(PREFIX.name + ".index")])
def test_a_checkpoint_is_found_from_its_folder_prefix_or_index(where):
    assert tf_checkpoint.locate(where) == PREFIX


def test_a_folder_without_the_checkpoint_file_uses_its_only_index(tmp_path):
    shutil.copytree(MODEL, tmp_path / "m")
    (tmp_path / "m" / "checkpoint").unlink()
    assert tf_checkpoint.locate(tmp_path / "m") == tmp_path / "m" / "model.ckpt-7"
    assert tf_checkpoint.locate(tmp_path) is None


def test_crc32c_and_its_mask():
    assert tf_checkpoint.crc32c(b"123456789") == 0xE3069283
    masked = ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8 & 0xFFFFFFFF
    assert tf_checkpoint.unmask_crc(masked) == 0xE3069283


# -- converted folders in transformers, and our own models, against TensorFlow's logits -------
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf") / "hf"
    written = convert_tf(str(MODEL), out, "both", heads=DISC_HEADS)
    assert written == [out / "discriminator", out / "generator"]
    return out


def test_converted_folders_load_in_transformers_with_tensorflows_outputs(converted):
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    ids, mask, types = inputs()
    disc = ElectraForPreTraining.from_pretrained(converted / "discriminator").eval()
    gen = ElectraForMaskedLM.from_pretrained(converted / "generator").eval()
    with torch.no_grad():
        close(disc(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, EXPECTED["discriminator_logits"])
        close(gen(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, EXPECTED["generator_logits"])
    assert (converted / "discriminator" / "vocab.txt").read_text() == (MODEL / "vocab.txt").read_text()


def test_read_checkpoint_builds_models_with_tensorflows_outputs():
    ids, mask, types = inputs()
    disc = read_checkpoint(MODEL, num_attention_heads=DISC_HEADS)
    gen = read_checkpoint(PREFIX, tf_model="generator")
    assert (disc.kind, gen.kind) == ("discriminator", "generator")
    assert disc.require_vocab().vocab[:3] == ["[PAD]", "[UNK]", "[CLS]"]
    with torch.no_grad():
        close(disc.build()(ids, mask, types), EXPECTED["discriminator_logits"])
        close(gen.build()(ids, mask, types), EXPECTED["generator_logits"])
        encoder = read_checkpoint(MODEL, kind="encoder", num_attention_heads=DISC_HEADS).build()
        close(encoder(ids, mask, types), disc.build("encoder")(ids, mask, types))


def test_the_encoder_node_takes_a_tf_checkpoint_as_its_checkpoint(tmp_path):
    """A `checkpoint = ...` setting naming a TF checkpoint loads its discriminator's encoder."""
    from spacy_electra.layers.loaders import read_for

    class Node:
        attrs = {"checkpoint": str(MODEL)}

    checkpoint = read_for(Node(), "[components.transformer.model]")
    assert checkpoint.kind == "discriminator" and checkpoint.config.num_hidden_layers == 2


def test_cli_converts_and_reports_each_folder(tmp_path):
    result = CliRunner().invoke(app, ["convert-tf", str(PREFIX), str(tmp_path / "gen"), "--model", "generator"])
    assert result.exit_code == 0, result.output
    assert f"Wrote {tmp_path / 'gen'}" in result.output
    assert json.loads((tmp_path / "gen" / "config.json").read_text())["architectures"] == ["ElectraForMaskedLM"]
    cased = CliRunner().invoke(app, ["convert-tf", str(MODEL), str(tmp_path / "d"), "--heads", "2", "--cased"])
    assert cased.exit_code == 0, cased.output
    assert json.loads((tmp_path / "d" / "tokenizer_config.json").read_text())["do_lower_case"] is False


# -- hostile files: one line naming the file and the fix --------------------------------------
def copy_model(tmp_path, source=MODEL):
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def one_line_error(match, *args, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_checkpoint_without_generator_is_an_error_only_when_the_generator_is_asked_for(tmp_path):
    only = FIXTURE / "discriminator_only"
    assert read_checkpoint(only, num_attention_heads=DISC_HEADS).kind == "discriminator"
    message = one_line_error("holds no generator", only, tf_model="generator")
    assert "--model discriminator" in message and "model.ckpt-7.index" in message
    result = CliRunner().invoke(app, ["convert-tf", str(only), str(tmp_path / "out"), "--model", "both"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "holds no generator" in result.output
    assert not (tmp_path / "out").exists()  # nothing half-converted


def test_wrong_dtype_is_refused():
    message = one_line_error("float16, not float32", FIXTURE / "half")
    assert "half/model.ckpt-7.index" in message


def test_truncated_data_shard(tmp_path):
    model = copy_model(tmp_path)
    shard = model / "model.ckpt-7.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:20_000])
    message = one_line_error("truncated", model, num_attention_heads=DISC_HEADS)
    assert str(shard) in message and "Download the checkpoint again" in message


def test_a_flipped_byte_fails_the_checksum(tmp_path):
    model = copy_model(tmp_path)
    _, entries = tf_checkpoint.read_index(model / "model.ckpt-7.index")
    entry = entries["electra/encoder/layer_1/output/dense/kernel"]
    shard = model / "model.ckpt-7.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[entry.offset + 5] ^= 0x01
    shard.write_bytes(bytes(data))
    message = one_line_error("fails its checksum", model, num_attention_heads=DISC_HEADS)
    assert "electra/encoder/layer_1/output/dense/kernel" in message and str(shard) in message


def test_an_index_pointing_past_the_shard(tmp_path):
    """The offset of one entry is raised in the index, with the block checksum made valid again,
    so only the bound on the shard's size can catch it."""
    model = copy_model(tmp_path)
    index = model / "model.ckpt-7.index"
    name = "electra/encoder/layer_1/output/dense/kernel"
    entry = tf_checkpoint.read_index(index)[1][name]
    assert entry.offset >= 2**14  # a 3-byte varint
    data = bytearray(index.read_bytes())
    old = b"\x20" + _varint(entry.offset) + b"\x28" + _varint(entry.size) + b"\x35" + entry.crc32c.to_bytes(4, "little")
    at = data.find(old)
    assert at > 0 and data.find(old, at + 1) < 0
    data[at + 3] = 0x7F  # the varint's last byte: the offset becomes about 2 MB
    _fix_block_checksums(data)
    index.write_bytes(bytes(data))
    assert tf_checkpoint.read_index(index)[1][name].offset > 2**20
    message = one_line_error("truncated or belongs to another checkpoint", model, num_attention_heads=DISC_HEADS)
    assert name in message


@pytest.mark.parametrize("damage", ["garbage", "cut", "flipped"])
def test_a_damaged_index(tmp_path, damage):
    model = copy_model(tmp_path)
    index = model / "model.ckpt-7.index"
    data = bytearray(index.read_bytes())
    if damage == "garbage":
        data = bytearray(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif damage == "cut":
        data = data[:-10]
    else:
        data[100] ^= 0x40
    index.write_bytes(bytes(data))
    message = one_line_error("not a readable TF checkpoint index", model)
    assert str(index) in message and "again" in message


def test_a_missing_shard(tmp_path):
    model = copy_model(tmp_path)
    (model / "model.ckpt-7.data-00000-of-00001").unlink()
    one_line_error("data-00000-of-00001 cannot be read.*copy every model.ckpt-7.data", model, num_attention_heads=DISC_HEADS)


def test_heads_that_do_not_divide_the_hidden_size():
    one_line_error("divisible.*--heads", MODEL, num_attention_heads=3)


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fix_block_checksums(data):
    """Recompute the masked CRC32C trailer of every data block of an index (SSTable) file."""
    import google_crc32c

    def handle(at, source=data):
        offset, at = _read_varint(source, at)
        size, at = _read_varint(source, at)
        return offset, size, at

    _, _, at = handle(len(data) - 48)
    index_offset, index_size, _ = handle(at)
    block = bytes(data[index_offset:index_offset + index_size])
    restarts = int.from_bytes(block[-4:], "little")
    end, pos, handles = len(block) - 4 - 4 * restarts, 0, []
    while pos < end:  # index block entries: shared, unshared, value length, key, value (a handle)
        _, pos = _read_varint(block, pos)
        unshared, pos = _read_varint(block, pos)
        length, pos = _read_varint(block, pos)
        offset, size, _ = handle(pos + unshared, block)
        handles.append((offset, size))
        pos += unshared + length
    for offset, size in handles:
        crc = google_crc32c.value(bytes(data[offset:offset + size + 1]))
        masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        data[offset + size + 1:offset + size + 5] = masked.to_bytes(4, "little")


def _read_varint(data, at):
    result = shift = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, at
        shift += 7
