"""A compact PyTorch ELECTRA (no spaCy imports) that reads and writes HF checkpoints."""
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
