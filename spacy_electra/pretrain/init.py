"""Pretraining from existing weights: the ``[init]`` section's checkpoints, checked and loaded.

``read_init`` reads the discriminator (``ElectraForPreTraining``, or a bare ELECTRA/BERT-family
encoder) and the optional generator (``ElectraForMaskedLM``) through ``read_checkpoint``, so any
source ``read_checkpoint`` understands (a local HF folder, a Hub id) is a source here. Everything
that can be refused is refused there, in one line naming the setting and the fix, before a
corpus is built: a generator whose vocabulary or embedding shapes differ from the
discriminator's, explicit ``model.*`` shapes or a ``corpus.vocab`` that contradict the
checkpoint. ``build_from_init`` then makes the ``ReplacedTokenDetection`` module with those
weights: one embedding module shared by both networks (the discriminator's), as in the released
models. With ``model.objective = "mlm"`` (the control that continued RTD is measured against) it
makes a ``MaskedLanguageModel`` instead: the whole encoder of ``init.discriminator`` under a fresh
masked-LM head tied to its word embeddings, so both objectives start from the same weights.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

import torch

from ..checkpoint import Checkpoint, CheckpointError, read_checkpoint, read_vocabulary
from ..pieces import WordPieceEncoder
from ..torch_model import ElectraConfig
from .config import SHAPE_KEYS, ConfigError, PretrainConfig
from .objective import MaskedLanguageModel, ReplacedTokenDetection

# What the two networks share: these must be equal for one embedding module to serve both.
SHARED_SHAPES = ("vocab_size", "embedding_size", "max_position_embeddings", "type_vocab_size")


@dataclass
class InitSources:
    """The checkpoints a run starts from, validated against each other and the config."""

    discriminator: Checkpoint
    generator: Optional[Checkpoint]
    vocab: WordPieceEncoder
    discriminator_source: str
    generator_source: str = ""

    def describe(self, objective: str = "rtd") -> str:
        """One line for the log: where each network comes from."""
        if objective == "mlm":
            what = ("a generator, continued whole with its masked-LM head" if self.discriminator.kind == "generator"
                    else "its encoder under a fresh masked-LM head")
            return (f"Starting from existing weights: masked LM from {self.discriminator_source} ({what}); "
                    f"vocabulary of {self.vocab.vocab_size:,} pieces.")
        disc = f"discriminator from {self.discriminator_source} ({_what(self.discriminator)})"
        if self.generator is not None:
            gen = f"generator from {self.generator_source}"
        else:
            gen = "generator built from the discriminator (no init.generator)"
        return f"Starting from existing weights: {disc}; {gen}; vocabulary of {self.vocab.vocab_size:,} pieces."


def _what(checkpoint: Checkpoint) -> str:
    if checkpoint.kind == "discriminator":
        return "ELECTRA discriminator"
    model_type = str(checkpoint.raw_config.get("model_type", "electra")).upper()
    return f"{model_type} encoder, fresh discriminator head"


def _read(source: str, key: str, heads: Optional[int] = None) -> Checkpoint:
    """One source; a Google TF checkpoint holds both models, so the key says which to take (and
    ``heads`` its head count, which TF checkpoints do not store)."""
    try:
        return read_checkpoint(source, tf_model="generator" if key == "init.generator" else "discriminator",
                               num_attention_heads=heads)
    except CheckpointError as err:
        raise CheckpointError(f"{key}={source!r}: {err}") from None


def read_init(config: PretrainConfig) -> Optional[InitSources]:
    """The checkpoints of ``config.init`` (``None`` when it names none), refused in one line
    when they cannot start this run."""
    init = config.init
    if not init.discriminator:
        return None
    disc = _read(init.discriminator, "init.discriminator", init.discriminator_heads)
    if disc.kind == "generator" and config.model.objective != "mlm":  # the MLM control continues a generator whole
        raise ConfigError(
            f"init.discriminator={init.discriminator!r} holds an ELECTRA generator (ElectraForMaskedLM): name it as "
            "init.generator and give its ElectraForPreTraining (or an encoder) as init.discriminator, or continue "
            "it as a masked LM with model.objective = \"mlm\"."
        )
    vocab = disc.require_vocab()
    gen = None
    if init.generator:
        gen = _read(init.generator, "init.generator", init.generator_heads)
        if gen.kind != "generator":
            raise ConfigError(
                f"init.generator={init.generator!r} holds an ELECTRA {gen.kind}, not a generator (ElectraForMaskedLM): "
                "give the generator trained with init.discriminator, or leave init.generator empty to build one."
            )
        _check_shareable(init.discriminator, disc, init.generator, gen)
    _check_settings(config, disc)
    return InitSources(disc, gen, vocab, init.discriminator, init.generator)


def _check_shareable(disc_source: str, disc: Checkpoint, gen_source: str, gen: Checkpoint) -> None:
    """Generator and discriminator must be able to share one embedding module and tokenize alike."""
    problems: List[str] = []
    for key in SHARED_SHAPES:
        d, g = getattr(disc.config, key), getattr(gen.config, key)
        if d != g:
            problems.append(f"{key} {g} vs {d}")
    dv, gv = disc.require_vocab(), gen.require_vocab()
    if dv.vocab != gv.vocab:
        differ = next((i for i, (a, b) in enumerate(zip(gv.vocab, dv.vocab)) if a != b), min(len(dv.vocab), len(gv.vocab)))
        problems.append(f"vocabularies differ ({gv.vocab_size:,} vs {dv.vocab_size:,} pieces, first at id {differ})")
    elif (dv.lowercase, dv.strip_accents) != (gv.lowercase, gv.strip_accents):
        problems.append(f"casing differs (do_lower_case {gv.lowercase} vs {dv.lowercase})")
    if problems:
        raise ConfigError(
            f"init.generator={gen_source!r} cannot share embeddings with init.discriminator={disc_source!r} "
            f"(generator vs discriminator: {'; '.join(problems)}): give the generator trained with that discriminator, "
            "or leave init.generator empty to build one from the discriminator."
        )


def _check_settings(config: PretrainConfig, disc: Checkpoint) -> None:
    """Explicit shapes and ``corpus.vocab`` must agree with the checkpoint they come from."""
    source = config.init.discriminator
    for key in SHAPE_KEYS:
        value = getattr(config.model, key)
        if value is not None and value != getattr(disc.config, key):
            raise ConfigError(
                f"model.{key}={value} contradicts init.discriminator={source!r} ({key} {getattr(disc.config, key)}): "
                f"set --model.{key} null; with [init] the shapes come from the checkpoint."
            )
    if config.corpus.seq_length > disc.config.max_position_embeddings:
        raise ConfigError(
            f"corpus.seq_length={config.corpus.seq_length} exceeds the max_position_embeddings="
            f"{disc.config.max_position_embeddings} of init.discriminator={source!r}: lower corpus.seq_length."
        )
    if config.corpus.vocab:
        fix = "set --corpus.vocab '' (with [init] the vocabulary comes from the checkpoint)"
        try:
            named = read_vocabulary(config.corpus.vocab)
        except CheckpointError as err:
            raise ConfigError(f"corpus.vocab={config.corpus.vocab!r} cannot be read ({err}): {fix}.") from None
        own = disc.require_vocab()
        if (named.vocab, named.lowercase, named.strip_accents) != (own.vocab, own.lowercase, own.strip_accents):
            raise ConfigError(
                f"corpus.vocab={config.corpus.vocab!r} is not the vocabulary of init.discriminator={source!r}: {fix}."
            )


# -- building ------------------------------------------------------------------------------------
def _trainable(config: ElectraConfig, dropout: float) -> ElectraConfig:
    """The checkpoint's shape with the run's dropout; config.json keys we do not model are not
    carried into the exports."""
    return dataclasses.replace(config, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, extra={})


def generator_layers(config: PretrainConfig, disc: ElectraConfig) -> int:
    """Layers of a generator built from the discriminator's lower layers: ``init.generator_layers``,
    or half the discriminator's, rounded up."""
    wanted = config.init.generator_layers or math.ceil(disc.num_hidden_layers / 2)
    return min(wanted, disc.num_hidden_layers)


def model_configs(config: PretrainConfig, init: InitSources) -> Dict[str, ElectraConfig]:
    """The discriminator's and the generator's shapes for a run from ``init``."""
    dropout = config.model.dropout
    disc = _trainable(init.discriminator.config, dropout)
    if init.generator is not None:
        gen = _trainable(init.generator.config, dropout)
    elif config.init.build_generator == "lower_layers":
        gen = dataclasses.replace(disc, num_hidden_layers=generator_layers(config, disc))
    else:
        gen = config.scaled_generator(disc)
    return {"discriminator": disc, "generator": gen}


def build_from_init(
    config: PretrainConfig, init: InitSources, *, log: bool = False
) -> Union[ReplacedTokenDetection, MaskedLanguageModel]:
    """The RTD module with the checkpoints' weights; parts the checkpoints lack (a discriminator
    head over an encoder, a built generator) keep the seeded random init of a from-scratch run.
    For the masked-LM control, the encoder of ``init.discriminator`` under a fresh MLM head, or a
    generator (``ElectraForMaskedLM``) whole, head included: it is already a masked LM."""
    if config.model.objective == "mlm":
        mlm = MaskedLanguageModel(_trainable(init.discriminator.config, config.model.dropout))
        whole = init.discriminator.kind == "generator"
        encoder = {k: v.float() for k, v in init.discriminator.weights.items() if whole or not k.startswith("head.")}
        _load(mlm.generator, encoder, allowed_missing=() if whole else ("head.",))
        if log:
            print(init.describe("mlm"), file=sys.stderr)
        return mlm
    shapes = model_configs(config, init)
    model = ReplacedTokenDetection(shapes["discriminator"], shapes["generator"], config.model.discriminator_weight)
    disc_weights = {k: v.float() for k, v in init.discriminator.weights.items()}
    _load(model.discriminator, disc_weights, allowed_missing=("head.",) if init.discriminator.kind == "encoder" else ())
    if init.generator is not None:
        gen_weights = {k: v.float() for k, v in init.generator.weights.items()}
        shared = {k[len("embeddings."):]: v for k, v in gen_weights.items() if k.startswith("embeddings.")}
        ours = model.discriminator.embeddings.state_dict()
        differ = max((float((shared[k] - ours[k]).abs().max()) for k in ours if k in shared), default=0.0)
        if differ > 0 and log:
            print(f"init.generator's embeddings differ from init.discriminator's (max difference {differ:.3g}); both "
                  "networks use the discriminator's, as ELECTRA shares one embedding module.", file=sys.stderr)
        _load(model.generator, {k: v for k, v in gen_weights.items() if not k.startswith("embeddings.")},
              allowed_missing=("embeddings.",))
    elif config.init.build_generator == "lower_layers":
        n = shapes["generator"].num_hidden_layers
        lower = {k: v for k, v in disc_weights.items()
                 if k.startswith("projection.") or (k.startswith("layers.") and int(k.split(".")[1]) < n)}
        _load(model.generator, lower, allowed_missing=("embeddings.", "head."))
    if log:
        print(init.describe(), file=sys.stderr)
    return model


def _load(module: torch.nn.Module, weights: Dict[str, torch.Tensor], allowed_missing: tuple) -> None:
    result = module.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(allowed_missing)]
    if missing or result.unexpected_keys:  # pragma: no cover - read_checkpoint checked every name and shape
        raise CheckpointError(f"Weights do not fit: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}.")
