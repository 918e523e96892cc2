"""Our ELECTRA against HF `transformers` (the oracle) on random tiny checkpoints."""
import warnings

import pytest
import torch

from spacy_electra.checkpoint import load_checkpoint, save_checkpoint

from ..conftest import make_hf_checkpoint, padded_batch

LAYOUTS = [
    pytest.param(dict(embedding_size=16, hidden_act="gelu"), id="projection-gelu"),
    pytest.param(dict(embedding_size=32, hidden_act="gelu_new"), id="no-projection-gelu_new"),
    pytest.param(dict(embedding_size=16, hidden_act="relu"), id="projection-relu"),
]


def assert_close(ours, theirs, mask=None):
    if mask is not None:
        ours, theirs = ours[mask.bool()], theirs[mask.bool()]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_discriminator_matches_hf(tmp_path, layout):
    hf = make_hf_checkpoint(tmp_path, "ElectraForPreTraining", **layout)
    ours = load_checkpoint(tmp_path)
    assert ours.kind == "discriminator"
    assert ours.config.has_projection == (layout["embedding_size"] != 32)
    ids, mask, types = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        assert_close(ours.encode(ids, mask, types), ref.hidden_states[-1], mask)
        assert_close(ours(ids, mask, types), ref.logits, mask)
        for mine, theirs in zip(ours.encode_layers(ids, mask, types), ref.hidden_states):
            assert_close(mine, theirs, mask)


@pytest.mark.parametrize("layout", LAYOUTS[:2])
def test_generator_matches_hf(tmp_path, layout):
    hf = make_hf_checkpoint(tmp_path, "ElectraForMaskedLM", **layout)
    ours = load_checkpoint(tmp_path)
    assert ours.kind == "generator"
    ids, mask, types = padded_batch(ours.config.vocab_size, lengths=(9, 12, 5))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        full = ours(ids, mask, types)
        assert full.shape == ref.shape
        assert_close(full, ref, mask)
        selected = torch.zeros_like(mask, dtype=torch.bool)
        selected[0, 3] = selected[1, 7] = selected[2, 1] = True
        assert_close(ours(ids, mask, types, positions=selected), ref[selected])


def test_unpadded_batch_without_mask_matches_hf(tmp_path):
    hf = make_hf_checkpoint(tmp_path, "ElectraModel")
    ours = load_checkpoint(tmp_path)
    assert ours.kind == "encoder"
    ids, _, _ = padded_batch(ours.config.vocab_size, lengths=(10, 10))
    with torch.no_grad():
        assert_close(ours(ids), hf(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize("cls_name", ["ElectraForPreTraining", "ElectraForMaskedLM"])
def test_save_then_hf_load_gives_equal_outputs(tmp_path, cls_name, caplog):
    import transformers

    hf = make_hf_checkpoint(tmp_path / "src", cls_name)
    ours = load_checkpoint(tmp_path / "src")
    save_checkpoint(ours, tmp_path / "out")
    cls = getattr(transformers, cls_name)
    reloaded, info = cls.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask, types = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        assert_close(
            reloaded.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
            hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits,
            mask,
        )
    # And our own round trip is exact.
    again = load_checkpoint(tmp_path / "out")
    for (k, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_bin_and_sharded_checkpoints_load(tmp_path):
    hf = make_hf_checkpoint(tmp_path / "src")
    hf.save_pretrained(tmp_path / "bin", safe_serialization=False)
    hf.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "bin" / "pytorch_model.bin").exists()
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    reference = load_checkpoint(tmp_path / "src").state_dict()
    for name in ("bin", "sharded"):
        loaded = load_checkpoint(tmp_path / name).state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference), name


def test_finetuned_heads_are_named_and_encoder_matches(tmp_path):
    hf = make_hf_checkpoint(tmp_path, "ElectraForTokenClassification", num_labels=3)
    with pytest.warns(UserWarning, match="classifier.weight"):
        ours = load_checkpoint(tmp_path)
    assert ours.kind == "encoder"
    ids, mask, types = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        assert_close(ours(ids, mask, types), hf.electra(ids, mask, types).last_hidden_state, mask)


def test_discriminator_loads_as_encoder(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForPreTraining")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dropping a pretraining head on request is silent
        enc = load_checkpoint(tmp_path, kind="encoder")
    assert enc.kind == "encoder"
    assert not any(k.startswith("head.") for k in enc.state_dict())
