"""A compact PyTorch ELECTRA (no spaCy imports); HF checkpoints in and out go through ``spacy_electra.checkpoint``."""
from .config import ElectraConfig
from .encoder import ElectraDiscriminator, ElectraEncoder, ElectraGenerator

__all__ = [
    "CheckpointError",
    "ElectraConfig",
    "ElectraDiscriminator",
    "ElectraEncoder",
    "ElectraGenerator",
    "load_checkpoint",
    "save_checkpoint",
]
