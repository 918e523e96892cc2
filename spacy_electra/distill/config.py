"""Distillation settings: typed sections read from a spaCy-style (confection) config file, as
``pretrain/config.py`` reads pretraining settings; ``configs/distill.cfg`` documents every key.

[student]
  ``layers``       transformer layers of the student (fewer than or as many as the teacher's).
  ``layer_map``    teacher layers (0-based) the student layers start from; null = evenly spaced
                   ending at the teacher's top layer (see ``student.pick_layers``).
  ``hidden_size``  a narrower hidden width (null = the teacher's); the transformer layers, the
                   projection and the heads then start fresh, the embeddings are still copied.
[loss]
  ``temperature``  T of the soft targets (teacher and student logits are divided by it).
  ``soft_weight``  weight of the distillation term T^2 * KL(teacher || student).
  ``gold_weight``  weight of the component's own loss on gold annotations, where a doc has them.
  ``hidden_weight`` weight of the mean squared error between each student layer's output and
                   that of the teacher layer it started from (and between the embedding
                   outputs); 0 turns it off. Students of the teacher's width only.
[training]
  ``max_steps``, ``batch_size`` (docs per step), ``learn_rate`` (constant after a linear
  ``warmup_steps``, so a resumed or extended run keeps the same schedule), ``grad_clip``,
  ``dropout``, ``seed``, ``eval_every`` (steps; with a dev set), ``checkpoint_every`` (steps),
  ``max_docs`` (read at most this many corpus docs; null = all), ``progress_bar``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from ..pretrain.config import _checked, build_sections, parse_overrides

__all__ = ["DistillConfig", "DistillError", "load_config", "parse_overrides"]


class DistillError(ValueError):
    """A distillation that cannot run; the message says what to change."""


@dataclass
class StudentSettings:
    layers: int = 3
    layer_map: Optional[List[int]] = None
    hidden_size: Optional[int] = None


@dataclass
class LossSettings:
    temperature: float = 2.0
    soft_weight: float = 1.0
    gold_weight: float = 0.5
    hidden_weight: float = 0.0


@dataclass
class TrainingSettings:
    max_steps: int = 2000
    batch_size: int = 16
    learn_rate: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    dropout: float = 0.1
    seed: int = 0
    eval_every: int = 200
    checkpoint_every: int = 200
    max_docs: Optional[int] = None
    progress_bar: bool = True


SECTIONS = {"student": StudentSettings, "loss": LossSettings, "training": TrainingSettings}


@dataclass
class DistillConfig:
    student: StudentSettings = field(default_factory=StudentSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DistillConfig":
        config = cls(**build_sections(data, SECTIONS, DistillError, _check))
        config.validate()
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        s, loss, t = self.student, self.loss, self.training
        if s.layers < 1:
            raise DistillError(f"student.layers={s.layers} must be at least 1.")
        if s.layer_map is not None and len(s.layer_map) != s.layers:
            raise DistillError(f"student.layer_map={s.layer_map} must name {s.layers} teacher layers (student.layers).")
        if s.hidden_size is not None and s.hidden_size < 1:
            raise DistillError(f"student.hidden_size={s.hidden_size} must be positive (or null for the teacher's).")
        if not loss.temperature > 0:
            raise DistillError(f"loss.temperature={loss.temperature} must be positive.")
        if min(loss.soft_weight, loss.gold_weight, loss.hidden_weight) < 0 or loss.soft_weight + loss.gold_weight == 0:
            raise DistillError("loss.soft_weight, gold_weight and hidden_weight must be >= 0, soft_weight and gold_weight not both 0.")
        if loss.hidden_weight and s.hidden_size is not None:
            raise DistillError("loss.hidden_weight needs a student of the teacher's width: set student.hidden_size = null or loss.hidden_weight = 0.")
        for key in ("max_steps", "batch_size", "eval_every", "checkpoint_every"):
            if getattr(t, key) < 1:
                raise DistillError(f"training.{key}={getattr(t, key)} must be at least 1.")
        if t.warmup_steps < 0 or not t.learn_rate > 0 or not 0 <= t.dropout < 1 or not t.grad_clip > 0:
            raise DistillError("training: warmup_steps >= 0, learn_rate > 0, 0 <= dropout < 1 and grad_clip > 0.")
        if t.max_docs is not None and t.max_docs < 1:
            raise DistillError(f"training.max_docs={t.max_docs} must be at least 1 (or null for all).")


def _check(key: str, value: Any, annotation: Any) -> Any:
    if key == "student.layer_map":
        ok = value is None or (isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            raise DistillError(f"{key}={value!r} must be a list of teacher layer numbers (0-based) or null; e.g. --{key} [1,3,5].")
        return None if value is None else list(value)
    try:
        return _checked(key, value, annotation)
    except ValueError as err:
        raise DistillError(str(err)) from None


def load_config(path: Union[str, Path, None], overrides: Optional[Mapping[str, Any]] = None) -> DistillConfig:
    """Read a .cfg file (confection syntax; None = the defaults) with dotted overrides
    (``{"training.max_steps": 100}``) applied."""
    data: Dict[str, Any] = {}
    if path is not None:
        from confection import Config

        path = Path(path)
        if not path.is_file():
            raise DistillError(f"Config file {path} does not exist; see configs/distill.cfg for an example.")
        try:
            data = {k: dict(v) for k, v in Config().from_disk(path, interpolate=True).items()}
        except Exception as err:  # confection raises several error types for bad files
            raise DistillError(f"Could not read {path}: {' '.join(str(err).split())}") from None
    for key, value in (overrides or {}).items():
        if "." not in key:
            raise DistillError(f"Cannot read override {key!r}; write overrides as --section.key value.")
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    return DistillConfig.from_dict(data)
