"""Masking, sampling and objective invariants of replaced-token detection."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spacy_electra.torch_model import ElectraConfig
from spacy_electra.pretrain.config import ConfigError, PretrainConfig, load_config, parse_overrides
from spacy_electra.pretrain.masking import (
    candidate_mask, gumbel_max_sample, mask_tokens, replace_tokens, token_types,
)
from spacy_electra.pretrain.objective import MaskedLanguageModel, ReplacedTokenDetection
from spacy_electra.pretrain.optim import build_optimizer, lr_factor, no_decay

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, CLS, SEP]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def packed_rows(n_rows=64, length=48, vocab=50, seed=0):
    """[CLS] A [SEP] B [SEP] rows with random lengths and padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n_rows, length, dtype=torch.long)
    for r in range(n_rows):
        n = int(torch.randint(6, length + 1, (1,), generator=gen))
        ids[r, :n] = torch.randint(5, vocab, (n,), generator=gen)
        cut = n // 2
        ids[r, 0], ids[r, cut], ids[r, n - 1] = CLS, SEP, SEP
    return ids


def test_masking_never_touches_specials_and_selects_fifteen_percent():
    ids = packed_rows(256)
    torch.manual_seed(0)
    masked = mask_tokens(ids, mask_id=MASK, special_ids=SPECIAL)
    candidates = candidate_mask(ids, SPECIAL)
    assert not (masked.selected & ~candidates).any()
    assert torch.equal(masked.input_ids[~masked.selected], ids[~masked.selected])
    per_row = masked.selected.sum(1)
    expected = torch.clamp(torch.round(candidates.sum(1) * 0.15), min=1).long()
    assert torch.equal(per_row, expected)
    assert abs(masked.selected.sum().item() / candidates.sum().item() - 0.15) < 0.02
    assert torch.equal(masked.labels, ids[masked.selected])


def test_masked_positions_are_85_percent_mask_15_percent_kept_never_random():
    ids = packed_rows(2000, length=64, vocab=1000)
    torch.manual_seed(1)
    masked = mask_tokens(ids, mask_id=MASK, special_ids=SPECIAL)
    chosen = masked.input_ids[masked.selected]
    is_mask = chosen == MASK
    kept = chosen == ids[masked.selected]
    assert torch.all(is_mask | kept)  # no random replacement
    assert abs(is_mask.float().mean().item() - 0.85) < 0.01


def test_selection_is_uniform_over_candidates():
    ids = torch.full((4000, 12), 7)
    ids[:, 0], ids[:, -1] = CLS, SEP
    torch.manual_seed(2)
    selected = mask_tokens(ids, mask_id=MASK, special_ids=SPECIAL).selected.float().mean(0)
    assert selected[0] == 0 and selected[-1] == 0
    inner = selected[1:-1]
    # 10 candidates, round(1.5) = 2 chosen per row -> each 0.2
    assert torch.allclose(inner, torch.full_like(inner, 0.2), atol=0.03)


def test_gumbel_max_matches_softmax_and_has_no_gradient():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]], requires_grad=True)
    n = 200_000
    torch.manual_seed(3)
    draws = gumbel_max_sample(logits.expand(n, -1))
    assert not draws.requires_grad
    freq = torch.bincount(draws, minlength=5).float() / n
    probs = F.softmax(logits.detach()[0], -1)
    assert torch.allclose(freq, probs, atol=0.005), (freq, probs)


def test_gumbel_max_in_half_precision_logits_is_finite_and_valid():
    logits = (torch.randn(512, 300) * 8).half()
    draws = gumbel_max_sample(logits)
    assert draws.dtype == torch.long and draws.min() >= 0 and draws.max() < 300


def test_replaced_label_is_sampled_differs_from_original():
    ids = torch.tensor([[CLS, 10, 11, 12, SEP, PAD]])
    selected = torch.tensor([[False, True, True, False, False, False]])
    sampled = torch.tensor([10, 20])  # first sample equals the original
    corrupted, replaced = replace_tokens(ids, selected, sampled)
    assert corrupted.tolist() == [[CLS, 10, 20, 12, SEP, PAD]]
    assert replaced.tolist() == [[False, False, True, False, False, False]]


def test_token_types_follow_first_sep():
    ids = torch.tensor([[CLS, 5, SEP, 6, 7, SEP, PAD], [CLS, 5, 6, SEP, PAD, PAD, PAD]])
    assert token_types(ids, SEP, PAD).tolist() == [[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]]


def tiny_configs(vocab=60):
    config = PretrainConfig.from_dict({"model": {"size": "tiny", "max_position_embeddings": 64, "dropout": 0.0},
                                     "corpus": {"seq_length": 32}})
    return config.discriminator_config(vocab), config.generator_config(vocab)


def test_generator_shares_embeddings_and_ties_output_layer():
    model = ReplacedTokenDetection(*tiny_configs())
    assert model.generator.embeddings is model.discriminator.embeddings
    word = model.discriminator.embeddings.word.weight
    assert model.generator.embeddings.word.weight is word
    assert model.generator.projection is not model.discriminator.projection or model.generator.projection is None
    # each shared tensor is one parameter for the optimizer
    params = list(model.parameters())
    assert len(params) == len({id(p) for p in params})
    assert sum(p is word for p in params) == 1
    # the output layer is the word-embedding matrix: logits move when the embeddings move
    ids = packed_rows(2, 16, 60)
    positions = ids > SEP
    before = model.generator(ids, positions=positions).detach()
    with torch.no_grad():
        word[7] += 1.0
    after = model.generator(ids, positions=positions).detach()
    assert before.shape == (int(positions.sum()), 60)
    assert not torch.allclose(before[:, 7], after[:, 7])


def masked_batch(n_rows: int):
    """Packed rows of length 20 over 60 ids, their attention mask, token types and masking (seed 4)."""
    ids = packed_rows(n_rows, 20, 60)
    torch.manual_seed(4)
    return ids, (ids != PAD).long(), token_types(ids, SEP, PAD), mask_tokens(ids, mask_id=MASK, special_ids=SPECIAL)


def test_objective_losses_cover_masked_and_non_padding_positions():
    model = ReplacedTokenDetection(*tiny_configs()).eval()
    ids, attention, types, masked = masked_batch(6)
    torch.manual_seed(5)
    out = model(masked, ids, attention, types)
    # recompute: generator CE at selected positions, discriminator BCE on every non-pad token
    gen_logits = model.generator(masked.input_ids, attention, types, positions=masked.selected)
    assert torch.allclose(out["gen_loss_sum"], F.cross_entropy(gen_logits, masked.labels, reduction="sum"))
    torch.manual_seed(5)
    sampled = gumbel_max_sample(gen_logits)
    corrupted, replaced = replace_tokens(ids, masked.selected, sampled)
    disc = model.discriminator(corrupted, attention, types)
    active = attention.bool()
    expected = F.binary_cross_entropy_with_logits(disc[active], replaced[active].float(), reduction="sum")
    assert torch.allclose(out["disc_loss_sum"], expected, rtol=1e-5)
    assert int(out["stats"][3]) == int(replaced.sum())


def test_sampling_temperature_flattens_the_generators_samples_and_anneals_to_one(monkeypatch):
    """model.sampling_temperature: replacements come from softmax(logits / T), T falling linearly
    from the setting to 1 over sampling_temperature_steps."""
    config = PretrainConfig.from_dict({"model": {"sampling_temperature": 4.0, "sampling_temperature_steps": 10}})
    assert [config.model.temperature_at(s) for s in (0, 5, 10, 50)] == [4.0, 2.5, 1.0, 1.0]
    assert PretrainConfig().model.temperature_at(0) == 1.0
    with pytest.raises(ConfigError, match="sampling_temperature=0.0 must be positive"):
        PretrainConfig.from_dict({"model": {"sampling_temperature": 0.0}})
    import spacy_electra.pretrain.objective as objective

    seen = []
    monkeypatch.setattr(objective, "gumbel_max_sample", lambda logits: seen.append(logits) or logits.argmax(-1))
    model = ReplacedTokenDetection(*tiny_configs()).eval()
    ids, attention, types, masked = masked_batch(4)
    with torch.no_grad():
        model(masked, ids, attention, types)
        model(masked, ids, attention, types, 4.0)
    assert torch.allclose(seen[1], seen[0] / 4.0)


def test_loss_is_finite_and_falls_on_a_tiny_model():
    torch.manual_seed(0)
    model = ReplacedTokenDetection(*tiny_configs())
    settings = PretrainConfig().training
    settings.learning_rate = 2e-3
    optimizer = build_optimizer(model, settings)
    ids = packed_rows(16, 24, 60)
    attention = (ids != PAD).long()
    types = token_types(ids, SEP, PAD)
    losses = []
    for step in range(40):
        torch.manual_seed(step)
        masked = mask_tokens(ids, mask_id=MASK, special_ids=SPECIAL)
        out = model(masked, ids, attention, types)
        loss = out["gen_loss_sum"] / masked.selected.sum() + 50 * out["disc_loss_sum"] / attention.sum()
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_mlm_control_is_a_same_size_generator():
    config = PretrainConfig.from_dict({"model": {"size": "small", "objective": "mlm"}})
    gen = config.generator_config(30522)
    disc = config.discriminator_config(30522)
    assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size) == (256, 4, 1024)
    assert gen.num_hidden_layers == disc.num_hidden_layers
    model = MaskedLanguageModel(ElectraConfig(vocab_size=60, embedding_size=16, hidden_size=32,
                                              num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    ids = packed_rows(2, 16, 60)
    masked = mask_tokens(ids, mask_id=MASK, special_ids=SPECIAL)
    out = model(masked, ids, (ids != PAD).long(), token_types(ids, SEP, PAD))
    assert out["gen_loss_sum"].requires_grad and float(out["disc_loss_sum"]) == 0.0


@pytest.mark.parametrize("size,expected", [
    ("small", (256, 12, 4, 1024, 128, 64, 1, 256)),
    ("base", (768, 12, 12, 3072, 768, 256, 4, 1024)),
    ("large", (1024, 24, 16, 4096, 1024, 256, 4, 1024)),
])
def test_size_presets_follow_the_paper(size, expected):
    config = PretrainConfig.from_dict({"model": {"size": size}})
    d, g = config.discriminator_config(30522), config.generator_config(30522)
    got = (d.hidden_size, d.num_hidden_layers, d.num_attention_heads, d.intermediate_size, d.embedding_size,
           g.hidden_size, g.num_attention_heads, g.intermediate_size)
    assert got == expected
    assert g.embedding_size == d.embedding_size and g.num_hidden_layers == d.num_hidden_layers


def test_explicit_sizes_and_generator_fraction_override_the_preset():
    config = PretrainConfig.from_dict({"model": {"size": "small", "num_hidden_layers": 4, "hidden_size": 128,
                                                 "num_attention_heads": 2, "generator_fraction": 0.5}})
    assert config.discriminator_config(100).num_hidden_layers == 4
    assert config.generator_config(100).hidden_size == 64


def test_config_file_overrides_and_errors(tmp_path):
    overrides = parse_overrides(["--training.max_steps", "100", "--model.size=tiny", "--corpus.train", '["a.txt"]'])
    assert overrides == {"training.max_steps": 100, "model.size": "tiny", "corpus.train": ["a.txt"]}
    config = load_config("configs/pretrain_small.cfg", overrides)
    assert config.training.max_steps == 100 and config.model.size == "tiny"
    assert config.model.discriminator_weight == 50.0 and config.model.mask_prob == 0.15
    with pytest.raises(ConfigError, match="training.max_step"):
        load_config("configs/pretrain_small.cfg", {"training.max_step": 1})
    with pytest.raises(ConfigError, match="precision"):
        load_config("configs/pretrain_small.cfg", {"training.precision": "fp8"})
    with pytest.raises(ConfigError, match="divisible"):
        load_config("configs/pretrain_small.cfg", {"training.batch_size": 10, "training.grad_accumulation": 3})


def test_weight_decay_groups_and_schedule():
    model = ReplacedTokenDetection(*tiny_configs())
    names = dict(model.named_parameters())
    assert no_decay("discriminator.layers.0.attention_norm.weight")
    assert no_decay("discriminator.embeddings.layer_norm.weight")
    assert no_decay("generator.head.bias") and no_decay("discriminator.layers.0.qkv.bias")
    assert not no_decay("discriminator.layers.0.qkv.weight") and not no_decay("discriminator.embeddings.word.weight")
    assert "discriminator.embeddings.word.weight" in names
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(0.91)
    assert lr_factor(100, 10, 100) == 0.0
    assert max(lr_factor(s, 10, 100) for s in range(100)) <= 1.0


def test_reference_adam_has_no_bias_correction_and_decoupled_decay():
    """training.optimizer = adam_reference: the update of the reference's AdamWeightDecayOptimizer,
    checked against the formula computed by hand for two steps (and 3.16x smaller than AdamW's
    at step 1: (1 - beta1) / sqrt(1 - beta2))."""
    import math

    from spacy_electra.pretrain.optim import ReferenceAdam

    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-6, 0.01
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = ReferenceAdam([{"params": [p], "weight_decay": wd}], lr=lr, betas=(b1, b2), eps=eps)
    expected, m, v = [1.0, -2.0], [0.0, 0.0], [0.0, 0.0]
    for grads in ([0.5, 0.1], [-0.2, 0.3]):
        p.grad = torch.tensor(grads)
        opt.step()
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            expected[i] -= lr * (m[i] / (math.sqrt(v[i]) + eps) + wd * expected[i])
        assert p.detach().tolist() == pytest.approx(expected, rel=1e-6)
    q = torch.nn.Parameter(torch.tensor([1.0]))
    adamw = torch.optim.AdamW([q], lr=lr, betas=(b1, b2), eps=eps, weight_decay=0.0)
    r = torch.nn.Parameter(torch.tensor([1.0]))
    ref = ReferenceAdam([r], lr=lr, betas=(b1, b2), eps=eps)
    q.grad, r.grad = torch.tensor([0.5]), torch.tensor([0.5])
    adamw.step()
    ref.step()
    assert (1.0 - q.item()) / (1.0 - r.item()) == pytest.approx(1 / ((1 - b1) / math.sqrt(1 - b2)), rel=1e-3)


def test_the_optimizer_setting_is_checked_and_used():
    from spacy_electra.pretrain.optim import ReferenceAdam

    settings = PretrainConfig().training
    settings.optimizer = "adam_reference"
    model = ReplacedTokenDetection(*tiny_configs())
    assert isinstance(build_optimizer(model, settings), ReferenceAdam)
    config = PretrainConfig()
    config.training.optimizer = "sgd"
    with pytest.raises(ConfigError, match="training.optimizer='sgd': use one of adamw, adam_reference"):
        config.validate()
