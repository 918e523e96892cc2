"""``spacy-electra distill``: a smaller student pipeline trained on a teacher pipeline's soft
outputs. ``student.py`` builds the student, ``corpus.py`` reads the text, ``trainer.py`` runs the
loop, ``config.py`` holds the settings (``configs/distill.cfg``)."""
from .config import DistillConfig, DistillError, load_config
from .student import build_student, pick_layers
from .trainer import agreement, distill

__all__ = ["DistillConfig", "DistillError", "agreement", "build_student", "distill", "load_config", "pick_layers"]
