"""``spacy_electra.release_free_memory.v1``: a ``[training.before_update]`` callback that hands
glibc's free heap pages back to the operating system every few steps.

Why: fine-tuning runs batches of a different shape at every step, and on Linux glibc's malloc
serves the activations (chunks of a few to tens of MB) from its heaps and keeps what they free
there, fragmented, instead of returning it. The process's resident memory then keeps rising over
a run although what is allocated stays flat (BENCHMARKS.md, section 17: SST-2 with
configs/textcat.cfg, 6-layer encoder: allocated ~1.02 GB throughout, resident 2.8 GB at step 25
and 3.4 GB at step 100; with this callback at every step, 1.57-1.58 GB). ``malloc_trim(0)``
releases the free pages of every heap; nothing that is in use moves. Where the C library is not
glibc the callback does nothing.

    [training.before_update]
    @callbacks = "spacy_electra.release_free_memory.v1"
    every = 1
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Callable, Dict, Optional

from spacy.util import registry


def _load_malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return glibc's free heap memory to the OS; False where there is no ``malloc_trim``."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


@registry.callbacks("spacy_electra.release_free_memory.v1")
def make_release_free_memory(every: int = 1) -> Callable[[Any, Dict[str, Any]], None]:
    """A ``[training.before_update]`` callback: ``release_free_memory()`` before every
    ``every``-th update (step 0 excluded: nothing has been freed yet)."""
    if every < 1:
        raise ValueError(f"every={every} must be at least 1 (steps between releases).")

    def before_update(nlp: Any, args: Dict[str, Any]) -> None:
        step = int(args.get("step", 0))
        if step and step % every == 0:
            release_free_memory()

    return before_update
