"""spacy_electra.release_free_memory.v1: found by spaCy's registry from a config, calls glibc's
malloc_trim before every ``every``-th update (not at step 0), refuses every < 1."""
import platform

import pytest
from spacy.util import registry
from thinc.api import Config

from spacy_electra import memory


def test_callback_trims_every_nth_step(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    config = Config().from_str('[cb]\n@callbacks = "spacy_electra.release_free_memory.v1"\nevery = 3\n')
    callback = registry.resolve(config)["cb"]
    for step in range(10):
        callback(None, {"step": step, "epoch": 0})
    assert calls == [0, 0, 0]  # steps 3, 6, 9


def test_every_below_one_is_refused():
    with pytest.raises(ValueError, match="every=0"):
        memory.make_release_free_memory(every=0)


def test_without_malloc_trim_it_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", None)
    assert memory.release_free_memory() is False
    memory.make_release_free_memory()(None, {"step": 1, "epoch": 0})


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_malloc_trim_is_found_and_runs():
    assert memory.release_free_memory() is True
