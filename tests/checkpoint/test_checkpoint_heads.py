"""Fine-tuned HF task heads in and out: ``read_checkpoint(...).heads`` / ``save_checkpoint(head_state=)``."""
import warnings

import torch

import pytest

from spacy_electra.checkpoint import CheckpointError, read_checkpoint, save_checkpoint

from ..conftest import make_hf_checkpoint, padded_batch


def test_qa_head_round_trip_matches_hf(tmp_path):
    import transformers

    hf = make_hf_checkpoint(tmp_path / "qa", "ElectraForQuestionAnswering")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the head asked for is not "left behind"
        checkpoint = read_checkpoint(tmp_path / "qa")
    encoder, head = checkpoint.build("encoder"), checkpoint.heads["qa_outputs"]
    assert set(head) == {"weight", "bias"} and checkpoint.architectures == ["ElectraForQuestionAnswering"]
    ids, mask, types = padded_batch(encoder.config.vocab_size)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        logits = torch.nn.functional.linear(encoder.encode(ids, mask, types), head["weight"], head["bias"])
    torch.testing.assert_close(logits[..., 0][mask.bool()], ref.start_logits[mask.bool()], atol=1e-5, rtol=1e-5)

    save_checkpoint(
        encoder, tmp_path / "out",
        head_state={f"qa_outputs.{k}": v for k, v in head.items()},
        config_updates={"architectures": ["ElectraForQuestionAnswering"]},
    )
    back, info = transformers.ElectraForQuestionAnswering.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        again = back.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(again.end_logits, ref.end_logits, atol=1e-5, rtol=1e-5)


def test_missing_head_is_empty_not_an_error(tmp_path):
    make_hf_checkpoint(tmp_path, "ElectraForPreTraining")
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.heads == {} and checkpoint.build("encoder").kind == "encoder" and checkpoint.kind == "discriminator"


@pytest.mark.parametrize("shapes", [
    {"qa_outputs.weight": (160,), "qa_outputs.bias": (2,)},
    {"qa_outputs.weight": (5, 80), "qa_outputs.bias": (2,)},
    {"classifier.weight": (32,), "classifier.bias": (3,)},
    {"classifier.weight": (3, 32)},
    {"classifier.weight": (3, 32), "classifier.bias": (4,)},
])
def test_malformed_fine_tuned_heads_are_refused_when_read(tmp_path, shapes):
    """Every head tensor is shape-checked against the config when the checkpoint is read, so a
    bad head is one CheckpointError naming it, never an IndexError or KeyError later."""
    from safetensors.torch import load_file, save_file

    make_hf_checkpoint(tmp_path, "ElectraForPreTraining")
    state = {k: v for k, v in load_file(str(tmp_path / "model.safetensors")).items() if not k.startswith("discriminator_")}
    state.update({name: torch.zeros(shape) for name, shape in shapes.items()})
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"(qa_outputs|classifier) head in .* does not fit"):
        read_checkpoint(tmp_path)


def test_architectures_must_be_a_list_of_names(tmp_path):
    import json

    make_hf_checkpoint(tmp_path, "ElectraForPreTraining")
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = 5
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="architectures must be a list"):
        read_checkpoint(tmp_path)
