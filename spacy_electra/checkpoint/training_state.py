"""A pretraining run's resume state (model, optimizer, scheduler, data position), read back.

It is our own file, but a file on disk all the same: it gets the checks every weights file
gets here (a regular file, a zip directory that cannot decompress to more than the file
holds) and is read with ``weights_only=True``, so nothing in it is ever executed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import torch

from .errors import CheckpointError
from .files import FileProblem, check_regular
from .reader import _check_zip_sizes


def read_training_state(path: Union[str, Path], device: torch.device) -> Dict[str, Any]:
    path = Path(path)
    try:
        check_regular(path)
        _check_zip_sizes(path)
        state = torch.load(path, map_location=device, weights_only=True)
    except (FileProblem, CheckpointError) as err:
        raise CheckpointError(str(err)) from None
    except Exception as err:  # a torn zip, a truncated pickle: torch raises several types
        raise CheckpointError(f"{type(err).__name__}: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a training state")
    return state
