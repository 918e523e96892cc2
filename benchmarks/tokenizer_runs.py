"""What a whitespace-free run costs spaCy's English tokenizer, and what ``annotate``'s limit on
such runs (``spacy_electra.annotate.io.MAX_RUN_CHARS``) leaves of it.

spaCy strips prefixes and suffixes one at a time and looks the rest of the run up again after
each, so a run of affix characters (``[``, emoji) costs time quadratic in its length. Timed here,
each once, with ``spacy.blank("en").make_doc``:

single    one run of N characters, for ``[``, an emoji and (control) a letter
capped    the worst line annotate still accepts: runs of exactly MAX_RUN_CHARS, all different
          (the tokenizer caches a run it has seen), separated by spaces, ``--capped-chars``
          long; a line's cost is at most its length times the limit, so it scales linearly
          up to ``nlp.max_length`` (1,000,000)
check     ``first_long_run`` (the check annotate runs on every text) on a 1,000,000-character
          text, both a passing one (runs at the limit) and a refused one (one run)

    .venv/bin/python benchmarks/tokenizer_runs.py                       # about a minute
    .venv/bin/python benchmarks/tokenizer_runs.py --sizes 1000,2000     # smoke run

Prints one JSON object (also written to ``--out`` when given); the exponent of each kind is the
slope of log(time) over log(N) between the smallest and the largest size.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KINDS = {"bracket": "[", "emoji": "\U0001F600", "letter": "a"}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,2000,4000,8000", help="run lengths, comma-separated")
    p.add_argument("--capped-chars", type=int, default=100_000, help="length of the 'capped' lines")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def exponent(points: List[Dict[str, float]]) -> Optional[float]:
    first, last = points[0], points[-1]
    if first["seconds"] <= 0 or last["seconds"] <= 0 or first["chars"] == last["chars"]:
        return None
    return math.log(last["seconds"] / first["seconds"]) / math.log(last["chars"] / first["chars"])


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    import spacy

    from spacy_electra.annotate.io import MAX_RUN_CHARS, first_long_run

    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    nlp = spacy.blank("en")
    nlp.max_length = max(nlp.max_length, args.capped_chars + 1, max(sizes) + 1)
    nlp.make_doc("warm up [the] tokenizer \U0001F600")

    single: Dict[str, List[Dict[str, float]]] = {}
    for kind, char in KINDS.items():
        single[kind] = [{"chars": n, "seconds": round(seconds(lambda: nlp.make_doc(char * n)), 4)} for n in sizes]
        print(kind, single[kind], file=sys.stderr)

    capped = {}
    n_runs = max(1, args.capped_chars // (MAX_RUN_CHARS + 1))
    for kind in ("bracket", "emoji"):
        # distinct runs (6 digits at the end): the tokenizer caches a run it has seen before
        text = " ".join(KINDS[kind] * (MAX_RUN_CHARS - 6) + f"{i:06d}" for i in range(n_runs))
        assert first_long_run(text) is None
        took = seconds(lambda: nlp.make_doc(text))
        capped[kind] = {"chars": len(text), "runs": n_runs, "seconds": round(took, 3),
                        "seconds_per_1e6_chars": round(took * 1_000_000 / len(text), 1)}
        print("capped", kind, capped[kind], file=sys.stderr)

    passing = " ".join(["[" * MAX_RUN_CHARS] * (1_000_000 // (MAX_RUN_CHARS + 1)))
    refused = "[" * 1_000_000
    check = {"passing_1e6": round(seconds(lambda: first_long_run(passing)), 4),
             "refused_1e6": round(seconds(lambda: first_long_run(refused)), 4)}

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, spaCy {spacy.__version__}",
        "max_run_chars": MAX_RUN_CHARS,
        "single": single,
        "exponent": {kind: None if exponent(points) is None else round(exponent(points), 2) for kind, points in single.items()},
        "one_run_of_1e6_hours": {  # quadratic extrapolation from the largest size measured
            kind: round(points[-1]["seconds"] * (1_000_000 / points[-1]["chars"]) ** 2 / 3600, 1)
            for kind, points in single.items() if kind != "letter"
        },
        "capped": capped,
        "check_seconds": check,
    }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
