"""BERT-layout encoders (``model_type: bert``: BERT, MiniLM...) load as an ELECTRA encoder with no
embedding projection and are written back as ELECTRA (issue #11.3). HF's BertModel is the oracle."""
import json
from pathlib import Path

import pytest
import spacy
import torch

from spacy_electra.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spacy_electra.checkpoint import read_checkpoint, read_vocabulary
from spacy_electra.checkpoint.reader import left_behind_warning

from ..conftest import trf_config, BASE_PIECES, padded_batch, randomize, write_vocab

MINILM = Path(__file__).resolve().parents[3] / "shared" / "models" / "all-MiniLM-L6-v2-electra"


def bert_config(**overrides):
    from transformers import BertConfig

    values = dict(vocab_size=len(BASE_PIECES), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    values.update(overrides)
    return BertConfig(**values)


def make_bert(directory: Path, cls_name: str = "BertModel", seed: int = 0, **config):
    import transformers

    torch.manual_seed(seed)
    model = randomize(getattr(transformers, cls_name)(bert_config(**config)).eval(), seed)
    model.save_pretrained(directory, safe_serialization=True)
    write_vocab(directory)
    return model


def hf_hidden(model, ids, mask, types):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]


def test_bert_model_loads_as_encoder_equal_to_hf(tmp_path):
    bert = make_bert(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "bert" and "embedding_size" not in config
    with pytest.warns(UserWarning, match=r"BERT encoder .* pooler\.dense\.bias, pooler\.dense\.weight \(BERT's pooler is not used"):
        ours = load_checkpoint(tmp_path)
    assert ours.kind == "encoder" and ours.projection is None
    ids, mask, types = padded_batch(len(BASE_PIECES))
    with torch.no_grad():
        got = ours.encode(ids, mask, types)
    expected = hf_hidden(bert, ids, mask, types)
    keep = mask.bool()
    assert torch.allclose(got[keep], expected[keep], atol=1e-5)


@pytest.mark.parametrize("cls_name, left_out", [
    ("BertForMaskedLM", "cls.predictions"),
    ("BertForSequenceClassification", "classifier.weight"),
])
def test_bert_task_models_give_their_encoder(tmp_path, cls_name, left_out):
    model = make_bert(tmp_path, cls_name)
    with pytest.warns(UserWarning, match=left_out):
        ours = load_checkpoint(tmp_path)
    ids, mask, _ = padded_batch(len(BASE_PIECES))
    with torch.no_grad():
        got = ours.encode(ids, mask)
        expected = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(got[mask.bool()], expected[mask.bool()], atol=1e-5)


def test_bert_classifier_head_is_returned(tmp_path):
    model = make_bert(tmp_path, "BertForSequenceClassification", num_labels=3)
    checkpoint = read_checkpoint(tmp_path)
    head, raw = checkpoint.heads["classifier"], checkpoint.raw_config
    with pytest.warns(UserWarning, match="pooler") as caught:
        left_behind_warning(checkpoint, taken=("classifier",))
    assert "classifier.weight" not in str(caught[0].message)
    assert torch.equal(head["weight"], model.classifier.weight) and head["bias"].shape == (3,)
    assert raw["model_type"] == "bert"


def test_bert_is_written_back_as_electra(tmp_path):
    from transformers import ElectraModel

    bert = make_bert(tmp_path / "bert")
    with pytest.warns(UserWarning, match="pooler"):
        ours = load_checkpoint(tmp_path / "bert")
    save_checkpoint(ours, tmp_path / "electra", vocab=read_vocabulary(tmp_path / "bert"))
    config = json.loads((tmp_path / "electra" / "config.json").read_text())
    assert config["model_type"] == "electra" and config["embedding_size"] == config["hidden_size"] == 32
    assert config["architectures"] == ["ElectraModel"]
    electra = ElectraModel.from_pretrained(tmp_path / "electra").eval()
    ids, mask, types = padded_batch(len(BASE_PIECES))
    keep = mask.bool()
    assert torch.allclose(hf_hidden(electra, ids, mask, types)[keep], hf_hidden(bert, ids, mask, types)[keep], atol=1e-5)
    again = load_checkpoint(tmp_path / "electra")  # no warning: nothing left behind any more
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ours.state_dict().items())


def test_bert_with_relative_positions_is_refused(tmp_path):
    make_bert(tmp_path, position_embedding_type="relative_key")
    with pytest.raises(CheckpointError, match=r"config\.json .*position_embedding_type='relative_key' is not supported"):
        load_checkpoint(tmp_path)


def test_bert_checkpoint_in_a_spacy_pipeline_equals_hf(tmp_path):
    bert = make_bert(tmp_path / "bert")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(tmp_path / "bert"))})
    with pytest.warns(UserWarning, match="pooler"):
        nlp.initialize()
    data = nlp("the new cafe in paris , london")._.trf_data
    ids = [2] + data.wordpieces.input_ids[0].tolist() + [3]
    expected = hf_hidden(bert, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), None)[0, 1:-1]
    assert torch.allclose(torch.from_numpy(data.model_output.last_hidden_state[0]), expected, atol=1e-5)


@pytest.mark.skipif(not MINILM.exists(), reason="real encoder in ../shared/models is absent")
def test_real_minilm_in_bert_layout_equals_hf_bert(tmp_path):
    """all-MiniLM-L6-v2 rewritten in BertModel's own layout (model_type bert, no embedding_size,
    a pooler): our load equals HF BertModel on real text."""
    from safetensors.torch import load_file, save_file
    from transformers import BertModel

    folder = tmp_path / "minilm-bert"
    folder.mkdir()
    config = json.loads((MINILM / "config.json").read_text())
    config.update(model_type="bert", architectures=["BertModel"])
    config.pop("embedding_size")
    (folder / "config.json").write_text(json.dumps(config))
    state = load_file(MINILM / "model.safetensors")
    state["pooler.dense.weight"] = torch.eye(384)
    state["pooler.dense.bias"] = torch.zeros(384)
    save_file(state, folder / "model.safetensors")
    for name in ("vocab.txt", "tokenizer_config.json"):
        (folder / name).write_bytes((MINILM / name).read_bytes())
    bert = BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    with pytest.warns(UserWarning, match="pooler"):
        ours = load_checkpoint(folder)
    wp = read_vocabulary(folder, vocab_size=ours.config.vocab_size)
    texts = ["The European Commission said on Thursday it disagreed with German advice .".split(),
             "Peter Blackburn lives in Brussels and works for BBC News .".split()]
    for words in texts:
        ids = torch.tensor([[wp.cls_id] + wp.encode(words).ids.tolist() + [wp.sep_id]])
        with torch.no_grad():
            assert torch.allclose(ours.encode(ids), bert(input_ids=ids).last_hidden_state, atol=1e-4)
