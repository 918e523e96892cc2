"""One way in for checkpoints: only ``spacy_electra/checkpoint/`` opens checkpoint files, and
nothing is read while a config resolves (``add_pipe``, ``spacy.load``, ``spacy train``'s
resolution): checkpoints are read at ``initialize``, hostile files refused through every entry
point within seconds."""
import ast
import os
import shutil
import threading
from pathlib import Path

import pytest
import spacy

from spacy_electra.checkpoint import CheckpointError

from ..conftest import make_hf_checkpoint, trf_config

PACKAGE = Path(__file__).resolve().parents[2] / "spacy_electra"
CHECKPOINT_FILES = {"config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
                    "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"}
READERS = {"open", "read_text", "read_bytes", "load", "loads", "load_file", "safe_open", "read_json", "fromfile", "memmap"}
WEIGHT_LOADERS = {("torch", "load"), ("safetensors.torch", "load_file"), ("safetensors", "safe_open")}


def _calls_reading_checkpoint_files(tree: ast.AST):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in READERS:
            continue
        constants = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        if constants & CHECKPOINT_FILES:
            yield node.lineno, name
        if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch":
            yield node.lineno, "torch.load"


def _imported_weight_loaders(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (node.module, alias.name) in WEIGHT_LOADERS:
                    yield node.lineno, f"{node.module}.{alias.name}"


def test_only_the_checkpoint_package_opens_checkpoint_files():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "checkpoint":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, what in [*_calls_reading_checkpoint_files(tree), *_imported_weight_loaders(tree)]:
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} {what}")
    assert not offenders, "read checkpoint files through spacy_electra.checkpoint:\n" + "\n".join(offenders)


def test_the_walk_finds_a_direct_read(tmp_path):
    """The scan above is not vacuous: the readers it must catch are caught."""
    code = (
        "import json, torch\nfrom safetensors.torch import load_file\n"
        "def f(d):\n    json.loads((d / 'config.json').read_text())\n    open(d / 'vocab.txt')\n    torch.load(d / 'x')\n"
    )
    tree = ast.parse(code)
    found = [what for _, what in [*_calls_reading_checkpoint_files(tree), *_imported_weight_loaders(tree)]]
    assert {"read_text", "open", "torch.load", "safetensors.torch.load_file"} <= set(found)


# -- nothing is read while a config resolves -------------------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("oneway") / "src"
    make_hf_checkpoint(path)
    return path


@pytest.fixture
def watched_reads(monkeypatch):
    """Every read_checkpoint / read_vocabulary / hub download made while the block runs."""
    from spacy_electra.checkpoint import hub, reader

    calls = []
    for module, name in ((reader, "read_checkpoint"), (reader, "read_vocabulary"), (reader, "read_config"), (hub, "download")):
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def test_add_pipe_and_spacy_load_read_no_checkpoint(source, tmp_path, watched_reads, monkeypatch):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(source)})
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": trf_config(source)}})
    nlp.add_pipe("electra_span_qa", config={"model": {"checkpoint": str(source), "max_length": 32, "max_query_pieces": 8, "doc_stride": 8}})
    assert watched_reads == []
    nlp.get_pipe("electra_ner").add_label("LOC")
    nlp.initialize()
    assert watched_reads  # initialize is where they are read
    nlp.to_disk(tmp_path / "p")
    shutil.rmtree(source.parent / "gone", ignore_errors=True)
    moved = source.parent / "gone"
    shutil.move(str(source), str(moved))  # the checkpoint folder is gone
    empty_cache = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(empty_cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(empty_cache / "hub"))
    watched_reads.clear()
    try:
        loaded = spacy.load(tmp_path / "p")
        doc = loaded("the city of london")
    finally:
        shutil.move(str(moved), str(source))
    assert watched_reads == [] and doc._.trf_data is not None and not empty_cache.exists()


@pytest.mark.parametrize("name", ["ner.cfg", "tagger_shared.cfg", "textcat.cfg", "span_qa.cfg"])
def test_spacy_train_config_resolution_reads_no_checkpoint(name, watched_reads):
    """What `spacy train` does before initialize (fill, validate, build every component, resolve
    [training]) with a checkpoint that exists nowhere: no error and no read."""
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import registry

    configs = PACKAGE.parent / "configs"
    config = spacy.util.load_config(configs / name, overrides={"paths.checkpoint": "/nowhere/at/all"}, interpolate=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    assert watched_reads == []


def test_missing_checkpoint_is_reported_at_initialize_with_the_fix(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    for factory, config, section in [
        ("electra_transformer", {"model": trf_config(missing)}, "[components.electra_transformer.model.encoder]"),
        ("electra_ner", {"model": {"tok2vec": trf_config(missing)}}, "[components.electra_ner.model.tok2vec.encoder]"),
        ("electra_span_qa", {"model": {"checkpoint": str(missing)}}, "[components.electra_span_qa.model]"),
    ]:
        nlp = spacy.blank("en")
        pipe = nlp.add_pipe(factory, config=config)  # no error yet: nothing is read
        if factory == "electra_ner":
            pipe.add_label("LOC")
        with pytest.raises(CheckpointError) as caught:
            nlp.initialize()
        message = str(caught.value)
        assert str(missing) in message and section in message and "\n" not in message


def _finishes(fn, seconds=20.0):
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung on a hostile file"
    return outcome


def _hostile(folder: Path, name: str, kind: str) -> None:
    target = folder / name
    target.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev_zero":
        target.symlink_to("/dev/zero")
    else:  # a 1 GB sparse file: no disk used, but a reader that trusts it reads 1 GB
        with open(target, "wb") as handle:
            handle.truncate(2**30)


def _entry_points(folder: Path, tmp_path: Path):
    """Every way a user hands us a checkpoint folder."""
    from typer.testing import CliRunner

    from spacy_electra.cli import app
    from spacy_electra.pretrain.corpus import build_corpus

    def pipe(factory, config):
        def run():
            nlp = spacy.blank("en")
            p = nlp.add_pipe(factory, config=config)
            for label in {"electra_textcat": ("A", "B"), "electra_ner": ("LOC",), "electra_tagger": ("NN",)}.get(factory, ()):
                p.add_label(label)
            nlp.initialize()
        return run

    def cli(*args):
        def run():
            result = CliRunner().invoke(app, list(args))
            if result.exit_code == 0:
                return result
            raise CheckpointError(result.output.strip().splitlines()[-1] if result.output.strip() else repr(result.exception))
        return run

    corpus = tmp_path / "text.txt"
    corpus.write_text("the city of london .\n")
    return {
        "encoder": pipe("electra_transformer", {"model": trf_config(folder)}),
        "ner": pipe("electra_ner", {"model": {"tok2vec": trf_config(folder)}}),
        "tagger": pipe("electra_tagger", {"model": {"tok2vec": trf_config(folder)}}),
        "textcat": pipe("electra_textcat", {"model": {"tok2vec": trf_config(folder)}}),
        "span_qa": pipe("electra_span_qa", {"model": {"checkpoint": str(folder), "max_length": 32, "max_query_pieces": 8, "doc_stride": 8}}),
        "rtd": pipe("electra_rtd", {"model": {"checkpoint": str(folder)}}),
        "export": cli("export", str(folder), str(tmp_path / "out")),
        "info": cli("info", str(folder)),
        "vocab/corpus": lambda: build_corpus([corpus], folder, tmp_path / "corpus", seq_length=16),
    }


@pytest.mark.parametrize("name", ["config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"])
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "huge"])
def test_hostile_files_are_refused_through_every_entry_point(source, tmp_path, name, kind):
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    _hostile(folder, name, kind)
    for entry, run in _entry_points(folder, tmp_path).items():
        if entry == "vocab/corpus" and name in ("config.json", "model.safetensors"):
            continue  # a vocabulary folder is read for its vocabulary only
        if entry == "info" and name in ("vocab.txt", "tokenizer_config.json"):
            continue  # info reads no vocabulary
        outcome = _finishes(run)
        error = outcome.get("error")
        assert error is not None, f"{entry} accepted a {kind} {name}"
        text = str(error)
        assert name in text or "regular file" in text or "bytes" in text, f"{entry}: {text}"
