"""Pretraining settings: typed sections read from a spaCy-style (confection) config file.

The config file is the single source of truth for a run; it is copied into the output folder so a
run can be resumed or reproduced from the folder alone. confection is imported lazily so the
trainer also runs where only torch is installed (the GPU machines), from a plain dict.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from ..torch_model import ElectraConfig

# Discriminator shapes of the ELECTRA paper (plus "tiny" for tests) and the generator width
# fraction the paper found best for each size.
PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128, generator_fraction=0.5),
    "small": dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                  intermediate_size=1024, generator_fraction=0.25),
    "base": dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, generator_fraction=1 / 3),
    "large": dict(embedding_size=1024, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, generator_fraction=0.25),
}
SHAPE_KEYS = ("embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
OBJECTIVES = ("rtd", "mlm")
GENERATOR_BUILDS = ("lower_layers", "fresh")
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adam_reference")
FORMATS = ("auto", "lines", "blank", "wiki", "spacy")


class ConfigError(ValueError):
    """A pretraining config that cannot work; the message says which setting to change."""


@dataclass
class ModelSettings:
    """Which networks to build. Shape fields left as ``None`` come from ``size``."""

    size: str = "small"
    objective: str = "rtd"
    embedding_size: Optional[int] = None
    hidden_size: Optional[int] = None
    num_hidden_layers: Optional[int] = None
    num_attention_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    generator_fraction: Optional[float] = None
    max_position_embeddings: int = 512
    dropout: float = 0.1
    mask_prob: float = 0.15
    mask_token_prob: float = 0.85
    discriminator_weight: float = 50.0
    # The generator's samples are drawn at sampling_temperature at step 0, falling linearly to 1
    # at sampling_temperature_steps (0: always 1, the paper). Above 1 flattens them: easier
    # replacements while the discriminator has no contextual features, so a generator that
    # learns fast does not leave it only context-level cues before it can use any.
    sampling_temperature: float = 1.0
    sampling_temperature_steps: int = 0

    def temperature_at(self, step: int) -> float:
        """The sampling temperature of the step after ``step`` completed steps."""
        steps = self.sampling_temperature_steps
        if steps <= 0 or step >= steps:
            return 1.0
        return self.sampling_temperature + (1.0 - self.sampling_temperature) * step / steps


@dataclass
class CorpusSettings:
    """Raw text in, packed memory-mapped sequences out (built once, cached in ``cache``)."""

    train: List[str] = field(default_factory=list)
    vocab: str = ""
    cache: str = ""
    format: str = "auto"
    seq_length: int = 128
    short_seq_prob: float = 0.05
    single_segment_prob: float = 0.1
    workers: int = 2
    max_documents: Optional[int] = None
    # Pack consecutive documents into shared rows (each one a segment): for corpora of short
    # documents, which one document per row fills mostly with padding (corpus.build_corpus).
    join_documents: bool = False


@dataclass
class TrainingSettings:
    """Optimisation and bookkeeping. The learning rate rises linearly for the warmup and falls
    linearly to zero at ``max_steps``; the warmup is ``warmup_fraction`` of ``max_steps`` (so
    ``--training.max_steps`` rescales the whole schedule) unless ``warmup_steps`` fixes it in steps,
    which then takes precedence.

    ``optimizer``: ``adamw`` is torch's AdamW (bias-corrected moments); ``adam_reference`` is the
    update of google-research/electra's ``AdamWeightDecayOptimizer`` (BERT's): no bias correction,
    so the first steps move by ``lr x m / sqrt(v)`` with both moments still near zero, i.e. much
    less than AdamW's first steps; weight decay is added to the update as in AdamW."""

    max_steps: int = 1000
    batch_size: int = 128
    grad_accumulation: int = 1
    learning_rate: float = 5e-4
    warmup_fraction: float = 0.01
    warmup_steps: Optional[int] = None
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    optimizer: str = "adamw"
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    checkpoint_every: int = 1000
    log_every: int = 50
    stop_after_steps: Optional[int] = None
    progress_bar: bool = True

    @property
    def warmup(self) -> int:
        """Warmup length in steps: ``warmup_steps`` when set, else ``warmup_fraction x max_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_fraction * self.max_steps)


@dataclass
class InitSettings:
    """Start from existing weights instead of random ones (replaced-token detection only).

    ``discriminator``: a local HF folder or a Hub id holding an ``ElectraForPreTraining``, or a
    bare encoder (``ElectraModel``, or a BERT-family ``BertModel``) whose discriminator head then
    starts fresh. ``generator``: optional, an ``ElectraForMaskedLM`` trained with that
    discriminator (same vocabulary and embedding width: the two share one embedding module, and
    where the files hold different embedding values the discriminator's are used). Empty builds
    the generator per ``build_generator``: ``lower_layers`` (the default, measured in
    benchmarks/results/init_generator.txt) copies the discriminator's lower ``generator_layers``
    layers (null = half, rounded up) at full width and adds a fresh masked-LM head tied to the
    shared embeddings; ``fresh`` is a random generator ``model.generator_fraction`` as wide as the
    discriminator, as in a from-scratch run.

    With ``discriminator`` set, the shapes, ``max_position_embeddings``, the vocabulary and its
    casing come from the checkpoint: ``model.size`` is not used, explicit ``model.*`` shapes that
    differ from the checkpoint's are refused, and ``corpus.vocab`` must be empty or hold the
    checkpoint's own vocabulary. The run writes that vocabulary to ``OUTPUT/vocab``.

    A Google TensorFlow checkpoint (``model.ckpt-N``, or its folder) may be both sources: it holds
    both models. It stores no attention-head counts; they follow Google's rule (hidden // 64, true
    of every released model) unless ``discriminator_heads`` / ``generator_heads`` give them."""

    discriminator: str = ""
    generator: str = ""
    build_generator: str = "lower_layers"
    generator_layers: Optional[int] = None
    discriminator_heads: Optional[int] = None
    generator_heads: Optional[int] = None


@dataclass
class PretrainConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    init: InitSettings = field(default_factory=InitSettings)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PretrainConfig":
        config = cls(**build_sections(data, SECTIONS, ConfigError))
        config.validate()
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        m, c, t = self.model, self.corpus, self.training
        if m.size not in PRESETS and m.size != "custom":
            raise ConfigError(f"model.size={m.size!r}: use one of {', '.join(PRESETS)} or 'custom'.")
        if m.size == "custom" and any(getattr(m, k) is None for k in SHAPE_KEYS):
            raise ConfigError(f"model.size='custom' needs every shape setting: {', '.join(SHAPE_KEYS)}.")
        if m.objective not in OBJECTIVES:
            raise ConfigError(f"model.objective={m.objective!r}: use 'rtd' (ELECTRA) or 'mlm' (control).")
        if not m.sampling_temperature > 0 or m.sampling_temperature_steps < 0:
            raise ConfigError(f"model.sampling_temperature={m.sampling_temperature} must be positive and "
                              f"model.sampling_temperature_steps={m.sampling_temperature_steps} at least 0 "
                              f"(0 keeps the paper's temperature 1 throughout).")
        if not 0 < m.mask_prob < 1 or not 0 <= m.mask_token_prob <= 1:
            raise ConfigError("model.mask_prob must be in (0, 1) and model.mask_token_prob in [0, 1].")
        if c.format not in FORMATS:
            raise ConfigError(f"corpus.format={c.format!r}: use one of {', '.join(FORMATS)}.")
        if c.seq_length < 8 or c.seq_length > m.max_position_embeddings:
            raise ConfigError(f"corpus.seq_length={c.seq_length} must be in [8, model.max_position_embeddings"
                              f"={m.max_position_embeddings}].")
        if t.optimizer not in OPTIMIZERS:
            raise ConfigError(f"training.optimizer={t.optimizer!r}: use one of {', '.join(OPTIMIZERS)}.")
        if t.precision not in PRECISIONS:
            raise ConfigError(f"training.precision={t.precision!r}: use one of {', '.join(PRECISIONS)}.")
        for key in ("max_steps", "batch_size", "grad_accumulation", "checkpoint_every", "log_every"):
            if getattr(t, key) < 1:
                hint = " (set it to training.max_steps to save only at the end)" if key == "checkpoint_every" else ""
                raise ConfigError(f"training.{key}={getattr(t, key)} must be a positive number of steps{hint}.")
        if not 0 <= t.warmup_fraction < 1:
            raise ConfigError(f"training.warmup_fraction={t.warmup_fraction} must be in [0, 1), e.g. 0.01.")
        if t.warmup_steps is not None and not 0 <= t.warmup_steps < t.max_steps:
            raise ConfigError(
                f"training.warmup_steps={t.warmup_steps} must be in [0, training.max_steps={t.max_steps}) or the "
                f"rate never peaks; set training.warmup_steps null and use training.warmup_fraction instead."
            )
        init = self.init
        if init.build_generator not in GENERATOR_BUILDS:
            raise ConfigError(f"init.build_generator={init.build_generator!r}: use 'lower_layers' or 'fresh'.")
        if init.generator_layers is not None and init.generator_layers < 1:
            raise ConfigError(f"init.generator_layers={init.generator_layers} must be a positive number of layers "
                              f"or null (half the discriminator's).")
        if init.generator and not init.discriminator:
            raise ConfigError(f"init.generator={init.generator!r} needs init.discriminator: name the discriminator "
                              f"(ElectraForPreTraining) it was trained with.")
        if init.generator and m.objective != "rtd":
            raise ConfigError(f"init.generator={init.generator!r} with model.objective={m.objective!r}: the masked-LM "
                              f"control continues one network, init.discriminator's encoder; empty init.generator.")
        if t.batch_size % t.grad_accumulation:
            raise ConfigError(f"training.batch_size={t.batch_size} (global, per optimizer step) must be "
                              f"divisible by training.grad_accumulation={t.grad_accumulation}.")

    # -- derived model shapes --------------------------------------------------------------------
    def shape(self) -> Dict[str, Any]:
        preset = dict(PRESETS.get(self.model.size, {}))
        for key in SHAPE_KEYS + ("generator_fraction",):
            value = getattr(self.model, key)
            if value is not None:
                preset[key] = value
        preset.setdefault("generator_fraction", 0.25)
        return preset

    def discriminator_config(self, vocab_size: int, pad_token_id: int = 0) -> ElectraConfig:
        shape = self.shape()
        return ElectraConfig(
            vocab_size=vocab_size,
            **{k: shape[k] for k in SHAPE_KEYS},
            hidden_dropout_prob=self.model.dropout,
            attention_probs_dropout_prob=self.model.dropout,
            max_position_embeddings=self.model.max_position_embeddings,
            pad_token_id=pad_token_id,
        )

    def generator_config(self, vocab_size: int, pad_token_id: int = 0) -> ElectraConfig:
        """Same depth and embedding width as the discriminator; hidden, heads and FFN scaled by
        ``generator_fraction`` (the MLM control uses fraction 1: a same-size masked LM)."""
        return self.scaled_generator(self.discriminator_config(vocab_size, pad_token_id))

    def scaled_generator(self, disc: ElectraConfig) -> ElectraConfig:
        """The generator of discriminator ``disc``: its depth and embedding width, hidden, heads
        and FFN scaled by ``generator_fraction`` (1 for the MLM control)."""
        fraction = 1.0 if self.model.objective == "mlm" else float(self.shape()["generator_fraction"])
        hidden = max(1, round(disc.hidden_size * fraction))
        heads = max(1, round(disc.num_attention_heads * fraction))
        while hidden % heads:
            heads -= 1
        return dataclasses.replace(
            disc, hidden_size=hidden, num_attention_heads=heads,
            intermediate_size=max(1, round(disc.intermediate_size * fraction)), extra={},
        )


SECTIONS: Dict[str, type] = {"model": ModelSettings, "corpus": CorpusSettings, "training": TrainingSettings,
                             "init": InitSettings}


# -- value types ---------------------------------------------------------------------------------
def build_sections(data: Mapping[str, Any], sections: Mapping[str, type], error: Callable[[str], Exception],
                   check: Optional[Callable[[str, Any, Any], Any]] = None) -> Dict[str, Any]:
    """Each section's settings dataclass from ``data`` (``{section: {key: value}}``): an unknown
    section or setting is refused with ``error`` naming what is accepted, and every value is
    type-checked by ``check`` (default ``_checked``) under its dotted name. Shared by the
    pretraining and the distillation configs."""
    check = check or _checked
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise error(f"Unknown config section(s) {unknown}; expected {sorted(sections)}.")
    built: Dict[str, Any] = {}
    for name, klass in sections.items():
        values = dict(data.get(name) or {})
        types = typing.get_type_hints(klass)
        bad = sorted(set(values) - set(types))
        if bad:
            raise error(f"Unknown setting(s) {', '.join(f'{name}.{b}' for b in bad)}; "
                        f"[{name}] accepts {', '.join(sorted(types))}.")
        for key, value in values.items():
            values[key] = check(f"{name}.{key}", value, types[key])
        built[name] = klass(**values)
    return built


def _checked(key: str, value: Any, annotation: Any) -> Any:
    """``value`` if it has the setting's type (an int is also a float), else a ConfigError that
    names the setting: ``--training.max_steps abc`` must not reach the trainer."""
    optional = typing.get_origin(annotation) is Union and type(None) in typing.get_args(annotation)
    if optional:
        if value is None:
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) in (list, List):
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        kind = "a list of strings"
    elif annotation is bool:
        if isinstance(value, bool):
            return value
        kind = "true or false"
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e6 in a config
            return int(value)
        kind = "an integer"
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        kind = "a number"
    elif annotation is str:
        if isinstance(value, str):
            return value
        kind = "a string"
    else:  # pragma: no cover - every field above has one of these types
        return value
    kind += " or null" if optional else ""
    raise ConfigError(f"{key}={value!r} must be {kind}; e.g. --{key} {_example(annotation)}.")


def _example(annotation: Any) -> str:
    return {int: "1000", float: "0.001", bool: "true", str: "cpu"}.get(annotation, '\'["a.txt"]\'')


# -- config files ---------------------------------------------------------------------------------
def parse_overrides(args: Sequence[str]) -> Dict[str, Any]:
    """``--training.max_steps 100`` / ``--training.max_steps=100`` -> {"training.max_steps": 100}.
    Values are read as JSON when they parse (numbers, null, true, lists) and as strings otherwise."""
    out: Dict[str, Any] = {}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--verbose", "-v"):
            raise ConfigError(f"{arg} is an option of spacy-electra itself: put it before the command "
                              f"(spacy-electra --verbose pretrain ...).")
        if not arg.startswith("--") or "." not in arg:
            raise ConfigError(f"Cannot read override {arg!r}; write overrides as --section.key value.")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"Override {arg} has no value.")
            key, raw = arg[2:], args[i + 1]
            i += 2
        key = key.replace("-", "_")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def load_config(path: Union[str, Path, None], overrides: Optional[Mapping[str, Any]] = None) -> PretrainConfig:
    """Read a .cfg file (confection syntax) with dotted overrides applied."""
    overrides = dict(overrides or {})
    if path is None:
        data: Dict[str, Any] = {}
        for key, value in overrides.items():
            section, name = key.split(".", 1)
            data.setdefault(section, {})[name] = value
        return PretrainConfig.from_dict(data)
    from confection import Config

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file {path} does not exist; see configs/pretrain_small.cfg for an example.")
    try:
        text = path.read_text(encoding="utf8")
        # A file written before a section existed (e.g. [init]) still takes overrides of it.
        present = {line.strip()[1:-1] for line in text.splitlines() if line.strip().startswith("[")}
        for section in sorted({key.split(".", 1)[0] for key in overrides} - present):
            if section in SECTIONS:
                text += f"\n[{section}]\n"
        cfg = Config().from_str(text, overrides=overrides, interpolate=True)
    except Exception as err:  # confection raises several error types for bad files/overrides
        raise ConfigError(f"Could not read {path}: {err}") from err
    return PretrainConfig.from_dict(dict(cfg))


def write_config(config: PretrainConfig, path: Union[str, Path]) -> None:
    """Write the resolved settings as a .cfg file that ``load_config`` reads back."""
    lines: List[str] = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    Path(path).write_text("\n".join(lines), encoding="utf8")
