"""Reading the corpus as a stream, and writing shards with a manifest that makes a run resumable.

Input: JSONL (one object per line, the text in a configurable field, every other field kept as
metadata) or plain text (one document per line), or a folder of such files (sorted, recursive).
Files are read line by line in binary and decoded per line, so one bad line (invalid JSON,
missing text, non-UTF-8 bytes, empty text) becomes one ``Reject`` and the rest of the file is
still read. Every line gets a ``seq`` (its position in the whole input) and an id
``file:line``; shards are ``seq // shard_size``, so the assignment of lines to shards depends on
the input alone and a rerun finds the same shards.

Output folder: ``records-00000.jsonl`` (or ``docs-00000.spacy``) per shard, ``rejects.jsonl``,
``manifest.json`` and ``.lock`` (held by the run writing the folder). A shard is written to a temporary file, fsynced and renamed; only then is
it added to the manifest (itself replaced atomically). Rejects are appended to one file whose
committed length the manifest records, so a rerun cuts off whatever a crash left past it. A
crash or Ctrl-C at any point thus leaves finished shards intact and listed, and nothing else.

Hostile lines. A rerun reads the same lines again, so a line that stopped a run would stop every
rerun at the same place and the corpus would never finish: whatever a line holds, it becomes a
record or a ``Reject``, never an exception. Besides the cases above, a line is rejected when its
JSON does not parse in Python (a number of more than 4,300 digits, nesting past the recursion
limit), is nested deeper than ``MAX_JSON_DEPTH`` (100) levels, holds a lone surrogate (an escaped
``\\ud800`` without its pair: not Unicode text, so neither spaCy nor a UTF-8 file can take it) in
the text, a question, a metadata value or key, or, with ``--output-format spacy``, an integer
outside msgpack's 64-bit range. Whatever still fails to serialise when its shard is written
becomes a reject there, in line order with the others.

Long runs without whitespace. spaCy's tokenizer takes time quadratic in the length of a
whitespace-free run of prefix/suffix characters (``[``, emoji...): 1,000 ``[`` take 0.08 s, 8,000
take 4.7 s, and a single run of 1,000,000 (within ``nlp.max_length``) would take about a day. So a
text with a run longer than ``MAX_RUN_CHARS`` (1,000 characters; a real word or URL is far
shorter) is rejected before the tokenizer sees it, with the run's offset and length in the
reason. It is rejected rather than split: splitting would insert characters the text does not
have, so the record's text and character offsets would no longer be the input's, and such a run
(base64, a minified blob, repeated symbols) is no language to annotate. The limit bounds a line's
tokenizer cost by its length times 1,000: at most about 0.2 ms per character measured (distinct
1,000-character runs of emoji), less than the encoder then spends on each of those characters as
a token (BENCHMARKS.md, section 15). The check itself is linear (``first_long_run``).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import srsly
from spacy.tokens import Doc, DocBin

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
LOCK = ".lock"
MANIFEST_FORMAT = "spacy-electra-annotate/1"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt",)
INPUT_FORMATS = ("auto", "jsonl", "text")
OUTPUT_FORMATS = ("jsonl", "spacy")
MAX_JSON_DEPTH = 100  # levels of objects/arrays in one JSONL line (the line's object is level 1)
MAX_RUN_CHARS = 1_000  # characters without whitespace that the tokenizer is given in one run
MSGPACK_INTS = (-(2**63), 2**64 - 1)  # what a .spacy shard (msgpack) stores
_SURROGATE = re.compile("[\ud800-\udfff]")
_RUN = re.compile(r"\S+")  # what spaCy's tokenizer splits on: str.isspace() characters


class AnnotateError(ValueError):
    """A problem with the run's inputs or output folder; the message names the cause and the fix."""


class UnwritableRecord(ValueError):
    """A record that cannot be serialised into its shard; the run rejects it and goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind_of(mode: int) -> str:
    """What ``os.stat`` says a path is, in words."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def first_long_run(text: str, limit: int = MAX_RUN_CHARS) -> Optional[Tuple[int, int]]:
    """``(offset, length)`` of the first run of non-whitespace characters longer than ``limit``,
    or None. Linear in ``len(text)``: ``str.split`` finds the longest run, and only a text that
    has one too long is scanned again for where it is."""
    if max(map(len, text.split()), default=0) <= limit:
        return None
    for match in _RUN.finditer(text):
        if match.end() - match.start() > limit:
            return match.start(), match.end() - match.start()
    return None  # pragma: no cover (split and \S+ agree on whitespace)


def _name(key: str) -> str:
    """A key for a reason: ASCII (escapes, so a reject line is always valid UTF-8), short."""
    shown = ascii(key)
    return shown if len(shown) <= 40 else shown[:37] + "...'"


def _child(where: str, part: str) -> str:
    """``where`` + ``part``, the path to a nested value; past 80 characters it ends in ``...``."""
    if where.endswith("..."):
        return where
    return where + part if len(where) < 80 else where + "..."


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return ascii(text[:200])[1:-1]


def value_problem(obj: Dict[str, Any], *, output_format: str = "jsonl") -> Optional[str]:
    """Why the parsed JSONL object ``obj`` cannot be annotated and stored, or None: nesting
    deeper than ``MAX_JSON_DEPTH`` (``obj`` is level 1), a lone surrogate in any string or key,
    or (``spacy`` output) an integer outside ``MSGPACK_INTS``. Iterative, linear in the size of
    ``obj``; the first problem in the line's order is the one named."""
    low, high = MSGPACK_INTS
    stack: List[Tuple[Any, str, int]] = [(obj, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            match = _SURROGATE.search(value)
            if match:
                return (f"lone surrogate {ascii(match.group())[1:-1]} at character {match.start()} of {where}: not "
                        "Unicode text (an escaped \\ud800-\\udfff without its pair)")
        elif isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels (in {where})"
            if isinstance(value, dict):
                children = []
                for key, item in value.items():
                    path = _child(where, f"[{_name(key)}]") if where else f"field {_name(key)}"
                    if _SURROGATE.search(key):
                        return f"lone surrogate in the key {path}: not Unicode text"
                    children.append((item, path, depth + 1))
            else:
                children = [(item, _child(where, f"[{i}]"), depth + 1) for i, item in enumerate(value)]
            stack.extend(reversed(children))
        elif output_format == "spacy" and isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            return f"integer of {len(str(abs(value)))} digits in {where}: a .spacy shard (msgpack) stores 64-bit integers only"
    return None


@dataclass
class InputFile:
    path: Path
    name: str  # relative to the input root: the ``file`` part of record ids
    format: str  # "jsonl" | "text"


@dataclass
class InputRecord:
    seq: int
    id: str
    text: str
    meta: Dict[str, Any] = field(default_factory=dict)
    questions: Optional[List[str]] = None


@dataclass
class Reject:
    seq: int
    file: str
    line: int
    reason: str

    def to_json(self) -> Dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


def _format_of(path: Path, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "text"


def list_input_files(path: Path, input_format: str = "auto") -> List[InputFile]:
    """The input's files in reading order. A folder contributes its ``.jsonl``/``.ndjson``/``.txt``
    files (recursively, sorted, hidden ones left out)."""
    if input_format not in INPUT_FORMATS:
        raise AnnotateError(f"Unknown input format {input_format!r}; use one of {', '.join(INPUT_FORMATS)}.")
    path = Path(path)
    try:
        mode = path.stat().st_mode  # never open(): opening a FIFO blocks until a writer comes
    except FileNotFoundError:
        raise AnnotateError(f"Input {path} does not exist; pass a JSONL or text file, or a folder of them.") from None
    except OSError as err:
        raise AnnotateError(f"Cannot read input {path} ({err.strerror}); pass a JSONL or text file, or a folder of them.") from None
    if stat.S_ISREG(mode):
        return [InputFile(path, path.name, _format_of(path, input_format))]
    if not stat.S_ISDIR(mode):
        raise AnnotateError(
            f"Input {path} is {kind_of(mode)}, not a file or folder; a rerun reads the input again, which a stream "
            "cannot do: save it to a file and pass that."
        )
    suffixes = JSONL_SUFFIXES + TEXT_SUFFIXES
    files = [
        p for p in sorted(path.rglob("*"))
        if p.is_file() and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    if not files:
        raise AnnotateError(f"Input folder {path} holds no {'/'.join(suffixes)} files; point it at the corpus files.")
    return [InputFile(p, p.relative_to(path).as_posix(), _format_of(p, input_format)) for p in files]


class InputStream:
    """Iterates ``InputRecord``s and ``Reject``s over the input files, in order, one line at a
    time. ``bytes_read`` / ``total_bytes`` drive the progress bar's ETA."""

    def __init__(self, files: List[InputFile], *, text_field: str = "text", max_length: int = 10**9,
                 output_format: str = "jsonl") -> None:
        self.files = files
        self.text_field = text_field
        self.max_length = max_length
        self.output_format = output_format
        self.total_bytes = sum(f.path.stat().st_size for f in files)
        self.bytes_read = 0

    def __iter__(self) -> Iterator[Union[InputRecord, Reject]]:
        seq = 0
        for input_file in self.files:
            with open(input_file.path, "rb") as handle:
                for line_no, raw in enumerate(handle, start=1):
                    self.bytes_read += len(raw)
                    try:
                        item = self._parse(seq, input_file, line_no, raw)
                    except (ValueError, TypeError, OverflowError, RecursionError) as err:
                        # A line must never stop the run: a rerun would stop at it again.
                        item = Reject(seq, input_file.name, line_no, f"cannot read this line ({type(err).__name__}: {_short(err)})")
                    yield item
                    seq += 1

    def _parse(self, seq: int, input_file: InputFile, line_no: int, raw: bytes) -> Union[InputRecord, Reject]:
        def reject(reason: str) -> Reject:
            return Reject(seq, input_file.name, line_no, reason)

        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # byte-order mark
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            return reject(f"not UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start}")
        meta: Dict[str, Any] = {}
        questions = None
        if input_file.format == "text":
            text = line
        else:
            if not line.strip():
                return reject("empty line (no JSON object)")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                return reject(f"invalid JSON: {err.msg} at column {err.colno}")
            except RecursionError:
                return reject(f"JSON nested deeper than {MAX_JSON_DEPTH} levels (deeper than Python's json reads)")
            except ValueError as err:  # a number of more digits than int() converts
                return reject(f"invalid JSON: {_short(err).split(';')[0]}")
            if not isinstance(obj, dict):
                return reject(f"JSON {type(obj).__name__}, not an object")
            problem = value_problem(obj, output_format=self.output_format)
            if problem is not None:
                return reject(problem)
            if self.text_field not in obj:
                return reject(f"no {self.text_field!r} field")
            text = obj.pop(self.text_field)
            if not isinstance(text, str):
                return reject(f"field {self.text_field!r} is {type(text).__name__}, not a string")
            meta = obj
            questions = obj.get("questions")
            if questions is not None and (
                not isinstance(questions, list) or not all(isinstance(q, str) for q in questions)
            ):
                return reject("field 'questions' is not a list of strings")
        if not text.strip():
            return reject("empty text")
        if len(text) > self.max_length:
            return reject(f"text of {len(text)} characters is longer than the pipeline's max_length {self.max_length}")
        run = first_long_run(text)
        if run is not None:
            return reject(
                f"{run[1]} characters without whitespace at character {run[0]}, over the limit of {MAX_RUN_CHARS} "
                "(spaCy's tokenizer takes time quadratic in such a run)"
            )
        return InputRecord(seq, f"{input_file.name}:{line_no}", text, meta, questions)


# -- output -------------------------------------------------------------------------------------
def shard_name(index: int, output_format: str) -> str:
    return f"records-{index:05d}.jsonl" if output_format == "jsonl" else f"docs-{index:05d}.spacy"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, rename over ``path``: readers see the old
    file or the new one, never a part (also when the disk fills up half-way)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class ShardWriter:
    """Collects one shard in a temporary file and publishes it with ``commit`` (atomic rename)."""

    def __init__(self, folder: Path, index: int, output_format: str) -> None:
        self.final = folder / shard_name(index, output_format)
        self.tmp = folder / f".{self.final.name}.tmp"
        self.output_format = output_format
        self.n_records = 0
        self._docs = DocBin(store_user_data=True) if output_format == "spacy" else None
        self._handle = open(self.tmp, "wb") if output_format == "jsonl" else None

    def add(self, doc: Optional[Doc], record: Dict[str, Any]) -> None:
        """Add one record (``doc`` may be None for a JSONL shard); raises ``UnwritableRecord``,
        having written nothing, when the record does not serialise (the runner rejects it)."""
        if self._handle is not None:
            try:
                line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            except (ValueError, TypeError, RecursionError) as err:
                raise UnwritableRecord(f"cannot be written as a JSON record ({type(err).__name__}: {_short(err)})") from None
            self._handle.write(line)
        else:
            assert doc is not None and self._docs is not None  # a .spacy shard stores each Doc
            doc.user_data["id"] = record["id"]
            doc.user_data["meta"] = record["meta"]
            try:  # DocBin.add packs user_data after it stored the tokens: a failure there would corrupt the shard
                srsly.msgpack_dumps(doc.user_data)
            except (ValueError, TypeError, OverflowError, RecursionError) as err:
                raise UnwritableRecord(f"cannot be stored in a .spacy shard ({type(err).__name__}: {_short(err)})") from None
            self._docs.add(doc)
        self.n_records += 1

    def commit(self) -> str:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self.tmp, self.final)
            _fsync_dir(self.final.parent)
        else:
            assert self._docs is not None  # output_format "spacy"
            write_atomic(self.final, self._docs.to_bytes())
        return self.final.name

    def abort(self) -> None:
        if self._handle is not None and not self._handle.closed:
            try:
                self._handle.close()
            except OSError:
                pass  # a full disk can fail the final flush too; the file goes anyway
        self.tmp.unlink(missing_ok=True)


def _differences(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


class Manifest:
    """``manifest.json``: the run's identity, the finished shards and the committed length of
    ``rejects.jsonl``. Saved atomically after every shard."""

    def __init__(self, folder: Path, run: Dict[str, Any]) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        self.run = run
        self.shards: Dict[int, Dict[str, Any]] = {}
        self.rejects_bytes = 0
        self.complete = False

    @classmethod
    def open(cls, folder: Path, run: Dict[str, Any]) -> "Manifest":
        """A fresh manifest for an empty (or new) folder, or the folder's own one when it belongs
        to this same run; anything else is refused before any work starts."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise AnnotateError(f"Output {folder} is {kind_of(folder.stat().st_mode)}; pass a folder (it is created if missing).")
        manifest = cls(folder, run)
        if not manifest.path.exists():
            if folder.exists() and any(p.name not in (REJECTS, LOCK) for p in folder.iterdir()):
                raise AnnotateError(
                    f"Output folder {folder} is not empty and has no {MANIFEST}; use an empty or new folder."
                )
            rejects = folder / REJECTS
            # A run creates rejects.jsonl empty and lists it in the manifest before it writes a
            # line there, so a non-empty one without a manifest is not a run's: keep it.
            if rejects.exists() and (not rejects.is_file() or rejects.stat().st_size > 0):
                raise AnnotateError(
                    f"Output folder {folder} holds a {REJECTS} but no {MANIFEST}, so it is not an annotate run's; "
                    "move that file away or use an empty or new folder."
                )
            return manifest
        try:
            data = json.loads(manifest.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise AnnotateError(f"Cannot read {manifest.path} ({err}); use another output folder.") from err
        if data.get("format") != MANIFEST_FORMAT:
            raise AnnotateError(f"{manifest.path} is not an annotate manifest ({MANIFEST_FORMAT}); use another output folder.")
        if data["run"] != run:
            changed = ", ".join(_differences(data["run"], run))
            raise AnnotateError(
                f"Output folder {folder} holds a different run (differs in: {changed}); "
                "use another output folder, or delete this one to start over."
            )
        for shard in data["shards"]:
            if not (folder / shard["file"]).exists():
                raise AnnotateError(
                    f"Shard {shard['file']} is listed in {manifest.path} but missing; the folder was "
                    "changed by hand: use another output folder, or delete this one to start over."
                )
            manifest.shards[shard["index"]] = shard
        manifest.rejects_bytes = data["rejects"]["bytes"]
        manifest.complete = bool(data.get("complete", False))
        return manifest

    def prepare(self) -> None:
        """Drop temporary files of an interrupted shard and cut ``rejects.jsonl`` back to its
        committed length (call it holding ``lock_folder``)."""
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink()
        rejects = self.folder / REJECTS
        if rejects.exists() and rejects.stat().st_size > self.rejects_bytes:
            with open(rejects, "r+b") as handle:
                handle.truncate(self.rejects_bytes)
        elif not rejects.exists():
            rejects.touch()
        self.save()

    def totals(self) -> Dict[str, int]:
        keys = ("n_records", "n_rejects", "n_words")
        return {k: sum(s[k] for s in self.shards.values()) for k in keys}

    def add_shard(self, entry: Dict[str, Any], rejects_bytes: int) -> None:
        self.shards[entry["index"]] = entry
        self.rejects_bytes = rejects_bytes
        self.save()

    def save(self) -> None:
        data = {
            "format": MANIFEST_FORMAT,
            "run": self.run,
            "complete": self.complete,
            "totals": self.totals(),
            "rejects": {"file": REJECTS, "bytes": self.rejects_bytes},
            "shards": [self.shards[i] for i in sorted(self.shards)],
        }
        write_atomic(self.path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def lock_folder(folder: Path):
    """An exclusive lock on ``folder`` for this process's lifetime (released when the returned
    file is closed or the process ends), so two runs never write the same shards at once."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AnnotateError(f"Another annotate run is writing to {folder}; wait for it to finish or stop it first.") from None
    return handle


def append_rejects(folder: Path, rejects: List[Reject]) -> int:
    """Append a shard's rejects (fsynced) and return the file's new length for the manifest."""
    path = folder / REJECTS
    with open(path, "ab") as handle:
        for reject in rejects:
            # backslashreplace writes a stray surrogate (a file name that is not UTF-8) as its
            # JSON escape, so a reject line is always written, and valid JSON
            handle.write((json.dumps(reject.to_json(), ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace"))
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()
