"""Hub ids are downloaded through huggingface_hub into the HF cache (issue #11.1), tested against
a fake hub on 127.0.0.1 (tests/fake_hub.py): never the internet."""
import shutil

import pytest
import spacy
import torch

from spacy_electra.checkpoint import CheckpointError, load_checkpoint
from spacy_electra.checkpoint import resolve_checkpoint

from ..conftest import trf_config, make_hf_checkpoint
from ..fake_hub import FakeHub

WANTED = ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
# Files a real repo has that spacy-electra never reads, so never downloads.
UNREAD = {"README.md": b"# tiny", "tf_model.h5": b"\0" * 64, "onnx/model.onnx": b"\0" * 64,
          "pytorch_model.bin": b"never fetched when there is safetensors"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-src")
    make_hf_checkpoint(root / "v0", seed=0)
    make_hf_checkpoint(root / "v1", seed=1)
    bin_only = root / "bin"
    make_hf_checkpoint(bin_only / "src", seed=2)
    import transformers

    transformers.ElectraForPreTraining.from_pretrained(bin_only / "src").save_pretrained(
        bin_only / "repo", safe_serialization=False
    )
    shutil.copy(bin_only / "src" / "vocab.txt", bin_only / "repo")
    return root


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running fake hub, an empty HF cache in tmp_path, downloads allowed: set at call time,
    which is when spacy-electra reads them (huggingface_hub's own constants are import-time)."""
    from huggingface_hub import constants

    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    yield server
    server.stop()


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_first_load_downloads_only_what_is_read_then_cache_serves_with_server_stopped(hub, folders, tmp_path, monkeypatch):
    hub.publish("tiny/electra", folders / "v0", extra=UNREAD)
    model = load_checkpoint("tiny/electra")
    assert same_weights(model, load_checkpoint(folders / "v0"))
    assert hub.files_fetched() == WANTED
    snapshots = list((tmp_path / "hf" / "hub" / "models--tiny--electra" / "snapshots").iterdir())
    assert len(snapshots) == 1 and sorted(p.name for p in snapshots[0].iterdir()) == WANTED

    hub.stop()
    assert same_weights(load_checkpoint("tiny/electra"), model)  # network down: the cache answers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert same_weights(load_checkpoint("tiny/electra"), model)


def test_revisions_inline_or_keyword(hub, folders):
    hub.publish("tiny/electra", folders / "v0")
    sha = hub.publish("tiny/electra", folders / "v1", revision="v1")
    v1 = load_checkpoint(folders / "v1")
    assert same_weights(load_checkpoint("tiny/electra@v1"), v1)
    assert same_weights(load_checkpoint("tiny/electra", revision="v1"), v1)
    assert same_weights(load_checkpoint(f"tiny/electra@{sha}"), v1)
    assert same_weights(load_checkpoint("tiny/electra"), load_checkpoint(folders / "v0"))
    with pytest.raises(CheckpointError, match="names revision 'v1' but revision='main' was also given"):
        resolve_checkpoint("tiny/electra@v1", revision="main")
    with pytest.raises(CheckpointError, match=r"Hub repo tiny/electra has no revision 'v2'"):
        load_checkpoint("tiny/electra@v2")


def test_unknown_repo_is_one_clear_error(hub):
    with pytest.raises(CheckpointError, match=r"Hub repo nobody/nothing was not found at http://127\.0\.0\.1:\d+"):
        load_checkpoint("nobody/nothing")


def test_repo_with_only_pytorch_model_bin(hub, folders):
    hub.publish("tiny/bin-only", folders / "bin" / "repo", extra={"README.md": b"x"})
    model = load_checkpoint("tiny/bin-only")
    assert same_weights(model, load_checkpoint(folders / "bin" / "repo"))
    assert hub.files_fetched() == ["config.json", "pytorch_model.bin", "vocab.txt"]


def test_repo_without_weights_we_read(hub, folders, tmp_path):
    repo = tmp_path / "tf-only"
    repo.mkdir()
    shutil.copy(folders / "v0" / "config.json", repo)
    hub.publish("tiny/tf-only", repo, extra={"tf_model.h5": b"\0" * 32})
    with pytest.raises(CheckpointError, match="Hub repo tiny/tf-only has no model.safetensors or pytorch_model.bin"):
        load_checkpoint("tiny/tf-only")
    assert "tf_model.h5" not in hub.files_fetched()


def test_repo_whose_config_is_not_electra_or_bert(hub, folders, tmp_path):
    import json

    repo = tmp_path / "gpt"
    shutil.copytree(folders / "v0", repo)
    config = json.loads((repo / "config.json").read_text())
    (repo / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    hub.publish("tiny/gpt", repo)
    with pytest.raises(CheckpointError, match=r"describes a 'gpt2' model; spacy-electra loads ELECTRA and BERT"):
        load_checkpoint("tiny/gpt")


def test_connection_dropped_mid_file_leaves_nothing_a_later_load_trusts(hub, folders, tmp_path, monkeypatch):
    hub.publish("tiny/electra", folders / "v0")
    hub.drop.add("model.safetensors")
    with pytest.raises(CheckpointError, match=r"Could not download tiny/electra from http://127\.0\.0\.1:\d+: .*Nothing partial is used"):
        load_checkpoint("tiny/electra")
    cache = tmp_path / "hf" / "hub" / "models--tiny--electra"
    for path in (cache / "snapshots").rglob("*"):  # whatever is visible there is complete
        if path.is_file():
            assert path.read_bytes() == (folders / "v0" / path.name).read_bytes()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"cached copy of tiny/electra .* lacks model\.safetensors or pytorch_model\.bin \(an interrupted download\?\)"):
        load_checkpoint("tiny/electra")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.drop.clear()
    assert same_weights(load_checkpoint("tiny/electra"), load_checkpoint(folders / "v0"))  # resumed, exact


def test_offline_and_uncached_says_what_to_do(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="downloads are off") as err:
        load_checkpoint("tiny/electra")
    assert "huggingface-cli download tiny/electra" in str(err.value)
    assert hub.requests == []


def test_local_files_only_never_touches_the_network(hub, folders):
    hub.publish("tiny/electra", folders / "v0")
    with pytest.raises(CheckpointError, match="local_files_only"):
        resolve_checkpoint("tiny/electra", local_files_only=True)
    assert hub.requests == []
    load_checkpoint("tiny/electra")
    hub.requests.clear()
    assert (resolve_checkpoint("tiny/electra", local_files_only=True) / "model.safetensors").is_file()
    assert hub.requests == []


def test_unreachable_hub_names_the_id_and_the_cause(hub, monkeypatch):
    url = hub.url
    hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(CheckpointError, match=r"tiny/electra.*(Connection|connect)"):
        load_checkpoint("tiny/electra")


@pytest.mark.parametrize(
    "name, message",
    [
        ("../../no-such-folder", "nor a valid hub id"),
        ("org/../x", "nor a valid hub id"),
        ("a/b/c", "nor a valid hub id"),
        ("org/na me", "nor a valid hub id"),
        ("ünï/côde", "nor a valid hub id"),
        ("org/name@../../refs", "not a valid branch, tag or commit name"),
        ("org/name@/abs", "not a valid branch, tag or commit name"),
        ("org--x/name", "nor a valid hub id"),
        ("", "The checkpoint is empty"),
    ],
)
def test_hostile_hub_ids_are_refused_before_any_request(hub, name, message):
    with pytest.raises(CheckpointError, match=message):
        resolve_checkpoint(name)
    assert hub.requests == []


def test_hub_id_in_a_spacy_config_is_fetched_at_initialize(hub, folders):
    hub.publish("tiny/electra", folders / "v0")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config("tiny/electra")})
    nlp.initialize()
    doc = nlp("the new cafe in paris")
    assert doc._.trf_data.model_output.last_hidden_state.shape[-1] == 32
    assert "model.safetensors" in hub.files_fetched()
