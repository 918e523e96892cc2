"""Fine-tuned HF task heads in and out: ``load_encoder_and_head`` / ``save_checkpoint(head_state=)``."""
import warnings

import torch

from spacy_electra.model.checkpoint import load_encoder_and_head, save_checkpoint

from .conftest import make_hf_checkpoint, padded_batch


def test_qa_head_round_trip_matches_hf(tmp_path):
    import transformers

    hf = make_hf_checkpoint(tmp_path / "qa", "ElectraForQuestionAnswering")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the head asked for is not "left behind"
        encoder, head, config = load_encoder_and_head(tmp_path / "qa", "qa_outputs")
    assert set(head) == {"weight", "bias"} and config["architectures"] == ["ElectraForQuestionAnswering"]
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
    encoder, head, _ = load_encoder_and_head(tmp_path, "qa_outputs")
    assert head == {} and encoder.kind == "encoder"
