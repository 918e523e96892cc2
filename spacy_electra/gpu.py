"""GPU readiness, checked before any GPU work starts, with one line that says what to install.

GPU work needs two libraries that neither spaCy nor PyTorch check together: a CUDA build of
torch (the ELECTRA encoder runs in torch) and, wherever spaCy itself runs on the GPU (``spacy
train --gpu-id``, ``annotate --gpu-id``, ``evaluate --gpu-id``: Thinc's ``CupyOps``), CuPy built
for the same CUDA major version. ``constraints.txt`` pins torch's *version*; pip's default index
for Linux serves the CUDA build of that version while the CPU index serves the CPU build, so which
one a machine has depends on how it was installed (README: GPU). Without these checks a missing
piece surfaces as spaCy's "GPU is not accessible" traceback or, with CuPy present and a CPU torch,
as "Torch not compiled with CUDA enabled" deep inside the first batch.

``pretrain`` needs only torch (``need_cupy=False``).
"""
from __future__ import annotations

from typing import Optional

TORCH_INSTALL = "pip install -c constraints.txt torch --index-url https://download.pytorch.org/whl/cu128"
CUPY_INSTALL = "pip install cupy-cuda12x"


class GPUNotReady(RuntimeError):
    """GPU work was asked for on a machine that cannot do it; the message names what to install."""


def _cupy_version() -> Optional[str]:
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(cupy.__version__)


def gpu_problem(gpu_id: int, *, need_cupy: bool = True) -> Optional[str]:
    """What stops GPU ``gpu_id`` from being used, in one line, or ``None`` when it is ready."""
    import torch

    if gpu_id < 0:
        return None
    if torch.version.cuda is None:
        return (f"GPU {gpu_id} asked for, but torch {torch.__version__} is a CPU build: install its CUDA build "
                f"(e.g. `{TORCH_INSTALL}`; pytorch.org/get-started/locally names the index for your driver; "
                "README: GPU) or use the CPU (--gpu-id -1).")
    if not torch.cuda.is_available():
        return (f"GPU {gpu_id} asked for, but torch (CUDA {torch.version.cuda}) sees no GPU: check the NVIDIA "
                "driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES, or use the CPU (--gpu-id -1).")
    count = torch.cuda.device_count()
    if gpu_id >= count:
        return f"GPU {gpu_id} asked for, but only {count} GPU(s) are visible (ids 0-{count - 1}): pass a smaller --gpu-id."
    if need_cupy and _cupy_version() is None:
        return (f"GPU {gpu_id} asked for, but CuPy (spaCy's GPU arrays) is not installed: `{CUPY_INSTALL}` "
                f"(CUDA 12; `cupy-cuda11x` for CUDA 11; torch here is built for CUDA {torch.version.cuda}).")
    return None


def require_gpu(gpu_id: int, *, need_cupy: bool = True) -> None:
    """Raise ``GPUNotReady`` naming the missing piece; with CuPy needed and present, make spaCy
    allocate on ``gpu_id`` (``spacy.require_gpu``). A negative id is the CPU: nothing to do."""
    problem = gpu_problem(gpu_id, need_cupy=need_cupy)
    if problem is not None:
        raise GPUNotReady(problem)
    if gpu_id >= 0 and need_cupy:
        import spacy

        spacy.require_gpu(gpu_id)


def describe(gpu_id: int) -> str:
    """One line about a ready GPU (for ``check-gpu``)."""
    import torch

    return (f"GPU {gpu_id} ready: {torch.cuda.get_device_name(gpu_id)}, torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}), CuPy {_cupy_version()}.")
