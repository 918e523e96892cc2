"""Pretraining that starts from existing HF checkpoints ([init]): step-0 outputs equal HF's, a
lower first loss than random init, resume, torchrun and export as for a from-scratch run, and
the refusals of sources that cannot work together."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_electra.checkpoint import load_checkpoint
from spacy_electra.cli import app
from spacy_electra.pretrain import ConfigError, load_config, pretrain
from spacy_electra.pretrain.corpus import CorpusError, build_corpus, open_or_build
from spacy_electra.pretrain.init import read_init
from spacy_electra.pretrain.trainer import build_objective

from ..conftest import BASE_PIECES, hf_config, padded_batch, randomize, write_vocab
from .test_pretrain_training import TINY, assert_two_processes_equal_one, data, max_diff, overrides, weights  # noqa: F401  (data is a fixture)

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_pair(directory: Path, seed: int = 0, random_all: bool = True, gen_embedding: bool = True, **gen_config):
    """An ElectraForPreTraining and an ElectraForMaskedLM that share their embeddings (as the
    released pairs do) saved to ``directory/{discriminator,generator}``; returns both HF models."""
    torch.manual_seed(seed)
    disc = transformers.ElectraForPreTraining(hf_config()).eval()
    settings = dict(hidden_size=16, num_attention_heads=2, intermediate_size=24)
    settings.update(gen_config)
    gen = transformers.ElectraForMaskedLM(hf_config(**settings)).eval()
    if random_all:
        randomize(disc, seed)
        randomize(gen, seed + 1)
    if gen_embedding:
        gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
    gen.tie_weights()
    for name, model in (("discriminator", disc), ("generator", gen)):
        model.save_pretrained(directory / name, safe_serialization=True)
        write_vocab(directory / name)
    return disc, gen


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("init_pair")
    save_pair(root)
    return root


def init_settings(data: Path, disc: Path, gen: Path = None, **extra):
    values = overrides(data, **{"init.discriminator": str(disc), "corpus.vocab": ""})
    if gen is not None:
        values["init.generator"] = str(gen)
    values.update(extra)
    return values


def step0_model(config):
    init = read_init(config)
    torch.manual_seed(config.training.seed)
    return build_objective(config, init.vocab, init).eval()


def test_step0_outputs_equal_hf_discriminator_and_generator(data, pair):
    config = load_config(TINY, init_settings(data, pair / "discriminator", pair / "generator"))
    model = step0_model(config)
    hf_disc = transformers.ElectraForPreTraining.from_pretrained(pair / "discriminator").eval()
    hf_gen = transformers.ElectraForMaskedLM.from_pretrained(pair / "generator").eval()
    ids, mask, types = padded_batch(len(BASE_PIECES), lengths=(12, 7, 3))
    active = mask.bool()
    with torch.no_grad():
        ours, theirs = model.discriminator(ids, mask, types), hf_disc(ids, attention_mask=mask, token_type_ids=types).logits
        assert (ours[active] - theirs[active]).abs().max() < 1e-5
        ours, theirs = model.generator(ids, mask, types), hf_gen(ids, attention_mask=mask, token_type_ids=types).logits
        assert (ours[active] - theirs[active]).abs().max() < 1e-5
    # one embedding module for both, and the generator keeps its own (smaller) shape
    assert model.generator.embeddings is model.discriminator.embeddings
    assert model.generator.config.hidden_size == 16 and model.discriminator.config.hidden_size == 32


@pytest.mark.parametrize("cls_name", ["ElectraModel", "BertModel"])
def test_an_encoder_as_discriminator_keeps_its_weights(data, tmp_path, cls_name):
    """A bare ELECTRA or BERT-family encoder: its hidden states at step 0 are the HF model's,
    the discriminator head is fresh, and the generator is built from its lower layers."""
    if cls_name == "BertModel":
        c = hf_config()
        hf = transformers.BertModel(transformers.BertConfig(
            vocab_size=c.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    else:
        hf = transformers.ElectraModel(hf_config())
    randomize(hf.eval())
    hf.save_pretrained(tmp_path / "enc", safe_serialization=True)
    write_vocab(tmp_path / "enc")
    config = load_config(TINY, init_settings(data, tmp_path / "enc"))
    model = step0_model(config)
    ids, mask, types = padded_batch(len(BASE_PIECES), lengths=(12, 7, 3))
    active = mask.bool()
    with torch.no_grad():
        ours = model.discriminator.encode(ids, mask, types)
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        assert (ours[active] - theirs[active]).abs().max() < 1e-5
        lower = model.generator.encode(ids, mask, types)  # the encoder's first layer (half of 2)
        first = hf(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states[1]
        assert (lower[active] - first[active]).abs().max() < 1e-5
    assert model.generator.config.num_hidden_layers == 1
    out = tmp_path / "run"
    pretrain(load_config(TINY, init_settings(data, tmp_path / "enc", **{"training.max_steps": 2})), out)
    exported = transformers.ElectraForPreTraining.from_pretrained(out / "discriminator")
    assert exported.config.hidden_size == 32 and exported.config.model_type == "electra"


def test_fresh_generator_is_a_fraction_of_the_encoder(data, pair):
    config = load_config(TINY, init_settings(data, pair / "discriminator", **{"init.build_generator": "fresh"}))
    model = step0_model(config)
    assert model.generator.config.num_hidden_layers == 2
    assert model.generator.config.hidden_size == 32 // 2  # pretrain_tiny's generator_fraction


def test_mlm_control_continues_the_whole_encoder(data, pair, tmp_path):
    """model.objective 'mlm' from init.discriminator: the masked LM's encoder is the checkpoint's
    at step 0 (all layers, not the lower half), its head is fresh, and the run exports an
    ElectraForMaskedLM that transformers loads with the checkpoint's vocabulary."""
    settings = init_settings(data, pair / "discriminator", **{"model.objective": "mlm"})
    model = step0_model(load_config(TINY, settings))
    hf = transformers.ElectraForPreTraining.from_pretrained(pair / "discriminator").eval()
    ids, mask, types = padded_batch(len(BASE_PIECES), lengths=(12, 7, 3))
    active = mask.bool()
    with torch.no_grad():
        ours = model.generator.encode(ids, mask, types)
        theirs = hf.electra(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        assert (ours[active] - theirs[active]).abs().max() < 1e-5
    assert model.generator.config.num_hidden_layers == hf.config.num_hidden_layers
    out = tmp_path / "mlm"
    pretrain(load_config(TINY, {**settings, "training.max_steps": 2}), out)
    exported = transformers.ElectraForMaskedLM.from_pretrained(out / "mlm")
    assert exported.config.hidden_size == hf.config.hidden_size
    assert (out / "mlm" / "vocab.txt").read_text() == (pair / "discriminator" / "vocab.txt").read_text()
    assert not (out / "discriminator").exists()


def test_mlm_control_with_a_generator_is_refused(data, pair):
    settings = init_settings(data, pair / "discriminator", pair / "generator", **{"model.objective": "mlm"})
    with pytest.raises(ConfigError, match="continues one network.*empty init.generator"):
        load_config(TINY, settings)


def test_mlm_control_continues_a_generator_with_its_head(data, pair, tmp_path):
    """A released generator (ElectraForMaskedLM) is already a masked LM: the control continues it
    whole, so at step 0 its logits are HF's; for replaced-token detection it is refused, naming
    both ways to use it."""
    settings = init_settings(data, pair / "generator", **{"model.objective": "mlm"})
    model = step0_model(load_config(TINY, settings))
    hf = transformers.ElectraForMaskedLM.from_pretrained(pair / "generator").eval()
    ids, mask, types = padded_batch(len(BASE_PIECES), lengths=(12, 7, 3))
    active = mask.bool()
    with torch.no_grad():
        ours, theirs = model.generator(ids, mask, types), hf(ids, attention_mask=mask, token_type_ids=types).logits
        assert (ours[active] - theirs[active]).abs().max() < 1e-5
    assert "continued whole with its masked-LM head" in read_init(load_config(TINY, settings)).describe("mlm")
    out = tmp_path / "mlm"
    pretrain(load_config(TINY, {**settings, "training.max_steps": 2}), out)
    assert transformers.ElectraForMaskedLM.from_pretrained(out / "mlm").config.hidden_size == hf.config.hidden_size
    with pytest.raises(ConfigError, match=r"holds an ELECTRA generator.*name it as init.generator.*model.objective = \"mlm\""):
        read_init(load_config(TINY, init_settings(data, pair / "generator")))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A discriminator and generator pretrained briefly on the test corpus (HF folders)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    pretrain(load_config(TINY, overrides(data, **{"training.max_steps": 60, "training.checkpoint_every": 60,
                                                  "training.log_every": 60})), out)
    return out


def first_step_loss(config, out: Path) -> float:
    pretrain(config, out)
    first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
    return first["gen_loss"] + config.model.discriminator_weight * first["disc_loss"]


def test_loss_at_step_0_is_far_below_random_init(data, trained, tmp_path):
    one = {"training.max_steps": 1, "training.log_every": 1, "training.checkpoint_every": 1}
    started = first_step_loss(load_config(TINY, init_settings(
        data, trained / "discriminator", trained / "generator", **one)), tmp_path / "from_checkpoint")
    random = first_step_loss(load_config(TINY, overrides(data, **one)), tmp_path / "random")
    assert started < 0.6 * random, (started, random)  # measured: 0.39


def test_resume_and_export_behave_as_from_scratch(data, pair, tmp_path):
    settings = init_settings(data, pair / "discriminator", pair / "generator",
                             **{"training.max_steps": 6, "training.checkpoint_every": 3})
    straight = tmp_path / "straight"
    pretrain(load_config(TINY, settings), straight)
    broken = tmp_path / "broken"
    pretrain(load_config(TINY, {**settings, "training.stop_after_steps": 3}), broken)
    assert not (broken / "discriminator").exists()
    args = ["pretrain", str(TINY), "--output", str(broken), "--resume"]
    for key, value in settings.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for kind in ("discriminator", "generator"):
        assert max_diff(weights(straight, kind), weights(broken, kind)) < 1e-6
    # both exports load in transformers with the checkpoint's vocabulary and keep sharing embeddings
    hf_disc = transformers.ElectraForPreTraining.from_pretrained(straight / "discriminator")
    hf_gen = transformers.ElectraForMaskedLM.from_pretrained(straight / "generator")
    assert hf_gen.config.hidden_size == 16
    assert torch.equal(hf_disc.electra.embeddings.word_embeddings.weight, hf_gen.electra.embeddings.word_embeddings.weight)
    for folder in ("discriminator", "generator", "vocab"):
        assert (straight / folder / "vocab.txt").read_text() == (pair / "discriminator" / "vocab.txt").read_text()
    assert load_checkpoint(straight / "discriminator").kind == "discriminator"
    # training moved away from the start
    start = transformers.ElectraForPreTraining.from_pretrained(pair / "discriminator")
    assert not torch.equal(start.electra.embeddings.word_embeddings.weight, hf_disc.electra.embeddings.word_embeddings.weight)


def test_torchrun_from_checkpoints_equals_one_process(data, pair, tmp_path):
    settings = init_settings(data, pair / "discriminator", pair / "generator",
                             **{"training.max_steps": 4, "training.batch_size": 8})
    assert_two_processes_equal_one(settings, tmp_path)


def test_different_generator_embeddings_give_way_to_the_discriminators(data, tmp_path):
    save_pair(tmp_path, gen_embedding=False)
    config = load_config(TINY, init_settings(data, tmp_path / "discriminator", tmp_path / "generator"))
    model = step0_model(config)
    hf_disc = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "discriminator")
    assert torch.equal(model.generator.embeddings.word.weight, hf_disc.electra.embeddings.word_embeddings.weight)


def cli_error(data: Path, out: Path, settings: dict) -> str:
    args = ["pretrain", str(TINY), "--output", str(out)]
    for key, value in settings.items():
        args += [f"--{key}", str(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in result.output and not (out / "checkpoints").exists()
    return line


def test_generator_that_cannot_share_embeddings_is_refused_in_one_line(data, tmp_path):
    # another vocabulary (one piece renamed, same size)
    save_pair(tmp_path / "vocab")
    pieces = list(BASE_PIECES)
    pieces[-1] = "zz"
    (tmp_path / "vocab" / "generator" / "vocab.txt").write_text("\n".join(pieces) + "\n")
    disc, gen = tmp_path / "vocab" / "discriminator", tmp_path / "vocab" / "generator"
    line = cli_error(data, tmp_path / "run", init_settings(data, disc, gen))
    assert str(disc) in line and str(gen) in line and "vocabularies differ" in line
    assert "leave init.generator empty" in line
    # another embedding width: the two cannot share one embedding module
    save_pair(tmp_path / "width", random_all=False, gen_embedding=False, embedding_size=8)
    disc, gen = tmp_path / "width" / "discriminator", tmp_path / "width" / "generator"
    line = cli_error(data, tmp_path / "run", init_settings(data, disc, gen))
    assert str(disc) in line and str(gen) in line and "embedding_size 8 vs 16" in line


@pytest.mark.parametrize("key,value,fragment", [
    ("model.hidden_size", 64, "model.hidden_size=64 contradicts init.discriminator"),
    ("corpus.vocab", "VOCAB", "is not the vocabulary of init.discriminator"),
    ("init.build_generator", "big", "init.build_generator='big'"),
])
def test_settings_that_contradict_the_checkpoint_are_refused(data, pair, tmp_path, key, value, fragment):
    if value == "VOCAB":
        other = list(BASE_PIECES)
        other[-1] = "zz"
        (tmp_path / "vocab").mkdir()
        (tmp_path / "vocab" / "vocab.txt").write_text("\n".join(other) + "\n")
        value = str(tmp_path / "vocab")
    line = cli_error(data, tmp_path / "run", init_settings(data, pair / "discriminator", **{key: value}))
    assert fragment in line


def test_generator_without_discriminator_is_refused(data, pair):
    with pytest.raises(ConfigError, match="needs init.discriminator"):
        load_config(TINY, {**overrides(data), "init.generator": str(pair / "generator")})


def test_corpus_cache_is_keyed_by_the_vocabulary(data, tmp_path):
    """A cache built with one vocabulary is not reused with another of the same size."""
    other = list(BASE_PIECES)
    other[-2], other[-1] = other[-1], other[-2]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "vocab.txt").write_text("\n".join(other) + "\n")
    with pytest.raises(CorpusError, match="another vocabulary"):
        open_or_build(data / "packed", [], tmp_path / "other", seq_length=32)
    assert len(open_or_build(data / "packed", [], data / "vocab", seq_length=32)) > 0
    meta = json.loads((data / "packed" / "meta.json").read_text())
    old = tmp_path / "old"
    build_corpus([data / "text.txt"], data / "vocab", old, seq_length=32, workers=1)
    meta = json.loads((old / "meta.json").read_text())
    del meta["vocab_sha256"]
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorpusError, match="before vocabularies were recorded"):
        open_or_build(old, [], data / "vocab", seq_length=32)
    assert np.isfinite(meta["n_tokens"])


def test_a_google_tf_checkpoint_starts_both_models_with_tensorflows_outputs(data):
    """One TF checkpoint (generator and discriminator in one file, written by TensorFlow: see
    tests/fixtures/tf_electra) as both init sources: at step 0 the discriminator's and the
    generator's logits are the ones TensorFlow computed, and the two share one embedding module."""
    fixture = ROOT / "tests" / "fixtures" / "tf_electra"
    expected = json.loads((fixture / "expected.json").read_text())
    config = load_config(TINY, init_settings(data, fixture / "model", fixture / "model", **{
        "corpus.seq_length": 12, "init.discriminator_heads": expected["discriminator"]["heads"]}))
    model = step0_model(config)
    ids, mask, types = (torch.tensor(expected[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    active = mask.bool()
    with torch.no_grad():
        for name, net in (("discriminator", model.discriminator), ("generator", model.generator)):
            ours = net(ids, mask, types)
            theirs = torch.tensor(expected[f"{name}_logits"])
            assert (ours[active] - theirs[active]).abs().max() < 1e-5, name
    assert model.generator.embeddings is model.discriminator.embeddings
