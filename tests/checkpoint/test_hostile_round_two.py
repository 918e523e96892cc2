"""Hostile checkpoints, second round: what the one checkpoint reader refuses before it costs
memory or time (zip bombs, junk safetensors headers, absurd hub ids) and what `export` checks
before it writes (vocabulary settings and size; an interrupted export leaves the old folder)."""
import json
import shutil
import struct
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from spacy_electra.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from spacy_electra.cli import app

from ..conftest import make_hf_checkpoint


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("round2") / "src"
    make_hf_checkpoint(path)
    return path


@pytest.fixture
def ckpt(source, tmp_path):
    path = tmp_path / "ckpt"
    shutil.copytree(source, path)
    return path


def test_zip_bomb_bin_is_refused_from_its_directory(ckpt, monkeypatch):
    """A small pytorch_model.bin whose one deflated record would decompress to 64 MB: refused
    from the zip directory, before torch.load reads (and allocates) anything."""
    (ckpt / "model.safetensors").unlink()
    with zipfile.ZipFile(ckpt / "pytorch_model.bin", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as record:
            chunk = bytes(2**20)
            for _ in range(64):
                record.write(chunk)
    assert (ckpt / "pytorch_model.bin").stat().st_size < 2 * 2**20
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(CheckpointError, match=r"decompress to 67,108,864 bytes from a [\d,]+-byte file .*zip bomb"):
        load_checkpoint(ckpt)
    assert loads == []


def test_real_bin_checkpoint_still_loads(ckpt, source):
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    got = load_checkpoint(ckpt).state_dict()
    want = load_checkpoint(source).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_safetensors_header_full_of_junk_names_is_refused_before_reading(ckpt, monkeypatch):
    """50,000 empty tensors under names no ELECTRA has: refused from the header alone."""
    import spacy_electra.checkpoint.reader as reader

    state = load_file(ckpt / "model.safetensors")
    state.update({f"junk.{i}": torch.zeros(0) for i in range(50_000)})
    save_file(state, ckpt / "model.safetensors")
    read = []
    monkeypatch.setattr(reader, "load_file", lambda path: read.append(path))
    with pytest.raises(CheckpointError, match=r"50,000 unexpected weights: junk\.0, junk\.1"):
        load_checkpoint(ckpt)
    assert read == []


def test_hub_id_longer_than_a_file_name_is_one_error():
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint("a" * 300)
    assert "\n" not in str(caught.value) and ("hub id" in str(caught.value) or "folder" in str(caught.value))
    with pytest.raises(CheckpointError):
        read_checkpoint("org/" + "b" * 300)


def _export(*args):
    result = CliRunner().invoke(app, ["export", *map(str, args)])
    return result.exit_code, result.output


def test_export_refuses_bad_tokenizer_settings(ckpt, tmp_path):
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": "no"}))
    code, output = _export(ckpt, tmp_path / "out")
    assert code == 1 and "tokenizer_config.json" in output and "true/false" in output
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_vocabulary_larger_than_the_model(ckpt, tmp_path):
    with open(ckpt / "vocab.txt", "a") as handle:
        handle.write("extra1\nextra2\n")
    code, output = _export(ckpt, tmp_path / "out")
    assert code == 1 and "vocab.txt" in output and "vocab_size" in output
    assert not (tmp_path / "out").exists()


def test_export_into_an_existing_folder_is_all_or_nothing(ckpt, tmp_path, monkeypatch):
    """A failure mid-export (a full disk) leaves the previous export whole: never the new
    config.json beside the old weights."""
    import spacy_electra.checkpoint.writer as writer

    out = tmp_path / "out"
    code, _ = _export(ckpt, out)
    assert code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "save_file", full_disk)
    code, output = _export(ckpt, out)
    assert code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_header_length_field_is_bounded(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + data[8:])
    with pytest.raises(CheckpointError, match="header claims"):
        load_checkpoint(ckpt)
