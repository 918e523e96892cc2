"""The one way in for checkpoints: every checkpoint file the package opens is opened here.

``read_checkpoint`` takes a local folder or a Hub id and returns one validated ``Checkpoint``:
config, vocabulary, encoder weights and whatever heads the checkpoint carries (pretraining
discriminator/generator heads, fine-tuned token/sequence classifiers, QA). A checkpoint is
untrusted input, so every check that can fail runs before anything is allocated from it:
files must be regular and of bounded size (a FIFO, ``/dev/zero`` or a 1 GB ``config.json`` is
refused before it is opened), the config is typed and bounded, safetensors headers are read on
their own (names, dtypes, shapes against the config), shard names stay inside the folder, and a
``pytorch_model.bin`` is read with ``weights_only=True`` after its zip directory has bounded the
bytes it may decompress to. Nothing in a checkpoint is ever executed.

Consumers: the encoder node and the heads (``layers/loaders.py``), QA, ``export``/``info``,
``pretrain`` and the corpus/vocabulary tools (``read_vocabulary``). ``tests/checkpoint``
fails if another module opens ``config.json``, ``vocab.txt``, ``tokenizer.json`` or weights.
"""
from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from ..atomic import PathLike
from ..pieces import VocabError, WordPieceEncoder
from ..torch_model.config import ElectraConfig
from ..torch_model.encoder import MODEL_CLASSES, ElectraEncoder
from . import hub, tf_checkpoint
from .errors import CheckpointError
from .files import (
    MAX_VOCAB_BYTES,
    FileProblem,
    check_dtypes,
    check_finite,
    check_regular,
    compare_shapes,
    layer_count,
    our_shapes,
    read_json,
    read_text,
    reading,
    safetensors_header_from_file,
)
from .hf_names import (
    DTYPE_NAMES,
    FINETUNED_HEADS,
    HF_LAYER,
    IGNORED,
    MODEL_TYPES,
    StateDict,
    detect_kind_from_names,
    hf_to_ours,
    name_pairs,
    normalise_hf_keys,
    normalise_names,
    qkv_names,
)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Fine-tuned HF heads a component can take over, by their key prefix.
HEAD_PREFIXES = ("classifier", "qa_outputs")
TOKEN_CLASSIFICATION = "ElectraForTokenClassification"
SEQUENCE_CLASSIFICATION = "ElectraForSequenceClassification"
QUESTION_ANSWERING = "ElectraForQuestionAnswering"
# A torch zip archive stores its tensors uncompressed; this much more than the file's own size
# (the zip directory, pickled structure) is allowed when decompressed, no more.
_ZIP_SLACK_BYTES = 16 * 2**20


@dataclass
class Checkpoint:
    """Everything one checkpoint holds, validated. ``weights`` are the tensors of a model of
    ``kind`` under our names (``build`` makes the module); ``heads`` are fine-tuned HF heads
    (``classifier``, ``qa_outputs``) under their own names with the prefix stripped, shapes
    checked against the config and ``architectures``."""

    source: str
    directory: Path
    config: ElectraConfig
    raw_config: Dict[str, Any]
    vocab: Optional[WordPieceEncoder]
    kind: str
    weights: StateDict
    heads: Dict[str, StateDict] = field(default_factory=dict)
    unused: List[str] = field(default_factory=list)  # HF keys of heads no model here reads

    @property
    def architectures(self) -> List[str]:
        value = self.raw_config.get("architectures") or []
        return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []

    def build(self, kind: Optional[str] = None) -> ElectraEncoder:
        """A fresh module of ``kind`` (default: the kind the weights hold; ``encoder`` drops a
        pretraining head) with these weights."""
        kind = kind or self.kind
        if kind not in MODEL_CLASSES:
            raise CheckpointError(f"kind={kind!r} is not one of {', '.join(MODEL_CLASSES)}.")
        if kind != "encoder" and kind != self.kind:
            raise CheckpointError(
                f"{self.directory} holds an ELECTRA {self.kind}, not a {kind}; load it with kind={self.kind!r} or kind='encoder'."
            )
        model = MODEL_CLASSES[kind](self.config)
        wanted = set(model.state_dict())
        model.load_state_dict({k: v.float() for k, v in self.weights.items() if k in wanted})
        model.eval()
        return model

    def require_vocab(self) -> WordPieceEncoder:
        if self.vocab is None:
            raise CheckpointError(f"{self.directory} has no vocab.txt; an ELECTRA checkpoint needs its WordPiece vocabulary.")
        return self.vocab


def read_checkpoint(
    path_or_id: PathLike, *, kind: Optional[str] = None, revision: Optional[str] = None,
    local_files_only: bool = False, vocab: str = "required", tf_model: str = "discriminator",
    num_attention_heads: Optional[int] = None,
) -> Checkpoint:
    """Resolve ``path_or_id`` (a folder, or a Hub id fetched into the HF cache unless
    ``local_files_only`` or ``HF_HUB_OFFLINE=1``), validate it and read it whole. ``kind``
    is detected from the weights unless given; ``vocab`` is ``"required"``, ``"optional"``
    (``info``/``export`` of a weights-only folder) or ``"ignored"``.

    A Google TensorFlow checkpoint (``model.ckpt-N``, its ``.index`` or a folder holding one) is
    read without TensorFlow (``tf_checkpoint``): ``tf_model`` takes its ``"discriminator"`` or
    ``"generator"``, and ``num_attention_heads`` overrides the head-count rule (hidden // 64)."""
    tf_prefix = tf_checkpoint.locate(path_or_id)
    if tf_prefix is not None:
        return _read_tf_checkpoint(str(path_or_id), tf_prefix, kind, vocab, tf_model, num_attention_heads)
    directory = resolve_checkpoint(path_or_id, revision=revision, local_files_only=local_files_only)
    config, raw = read_config(directory)
    prefix = f"{raw.get('model_type', 'electra')}."
    paths = weight_files(directory)
    header = _weight_shapes(paths)
    # safetensors: dtypes, names and shapes are checked from the headers, before a tensor is read
    build = _check_against_config(header, config, kind, prefix, directory) if header is not None else None
    wordpiece = None
    if vocab != "ignored" and (vocab == "required" or (directory / "vocab.txt").exists()):
        wordpiece = read_vocabulary(directory, vocab_size=config.vocab_size)
    hf_state: StateDict = {}
    for path in paths:
        hf_state.update(_read_weight_file(path))
    if build is None:  # pytorch_model.bin: the same checks once it is loaded, still before building
        loaded = {k: (DTYPE_NAMES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in hf_state.items()}
        build = _check_against_config(loaded, config, kind, prefix, directory)
    try:
        check_finite(((k, v) for k, v in hf_state.items() if not IGNORED.search(k)), str(directory))
    except FileProblem as err:
        raise _problem(err, "Export the weights again from a good copy.") from None
    weights, left_out = hf_to_ours(hf_state, config, build, prefix)
    normalised = normalise_hf_keys(hf_state, prefix)
    heads: Dict[str, StateDict] = {}
    for head in HEAD_PREFIXES:
        tensors = {k[len(head) + 1:]: v.float() for k, v in normalised.items() if k.startswith(head + ".")}
        if tensors:
            heads[head] = tensors
    unused = [k for k in left_out if FINETUNED_HEADS.match(k)]
    checkpoint = Checkpoint(str(path_or_id), directory, config, raw, wordpiece, build, weights, heads, unused)
    _check_heads(checkpoint)
    return checkpoint


def _read_tf_checkpoint(
    source: str, prefix: Path, kind: Optional[str], vocab: str, model: str, heads: Optional[int]
) -> Checkpoint:
    """A Google TF checkpoint's ``model``: shapes checked from its index, then its tensors read."""
    num_shards, entries = tf_checkpoint.read_index(prefix.with_name(prefix.name + ".index"))
    described = tf_checkpoint.describe(prefix, entries, model, num_attention_heads=heads)
    directory, config = prefix.parent, described.config
    build = _check_against_config(described.shapes, config, kind, "electra.", directory)
    wordpiece = None
    if vocab != "ignored" and (vocab == "required" or (directory / "vocab.txt").exists()):
        wordpiece = read_vocabulary(directory, vocab_size=config.vocab_size)
    hf_state = tf_checkpoint.read_tensors(described, entries, num_shards)
    try:
        check_finite(hf_state.items(), f"{prefix}")
    except FileProblem as err:
        raise _problem(err, "Download the checkpoint again.") from None
    weights, _ = hf_to_ours(hf_state, config, build)
    return Checkpoint(source, directory, config, config.to_hf_dict(build), wordpiece, build, weights)


def left_behind_warning(checkpoint: Checkpoint, taken: Tuple[str, ...] = ()) -> None:
    """Warn about the fine-tuned head weights of ``checkpoint`` that the caller leaves behind
    (``taken`` names the head prefixes it uses); a pretraining head dropped on purpose is not
    worth a warning."""
    left = [k for k in checkpoint.unused if not k.startswith(tuple(f"{name}." for name in taken))]
    if left:
        model_type = str(checkpoint.raw_config.get("model_type", "electra")).upper()
        pooler = " (BERT's pooler is not used: spaCy reads token vectors)" if any(k.startswith("pooler.") for k in left) else ""
        warnings.warn(
            f"Loaded the {model_type} encoder of {checkpoint.directory}; these head weights were not loaded: "
            + ", ".join(left) + pooler,
            stacklevel=3,
        )


def _check_heads(checkpoint: Checkpoint) -> None:
    """Every shape of a fine-tuned head against the config and ``architectures``, so a bad head
    is one error here and never an IndexError at the first doc."""
    hidden = checkpoint.config.hidden_size
    where = checkpoint.directory
    architectures = checkpoint.raw_config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
    ):
        raise CheckpointError(f"{where / 'config.json'}: architectures must be a list of class names, not {architectures!r}.")

    def expect(name: str, shapes: Dict[str, Tuple[int, ...]]) -> None:
        found = {k: tuple(v.shape) for k, v in checkpoint.heads.get(name, {}).items()}
        missing = sorted(set(shapes) - set(found))
        wrong = [f"{name}.{k} {found[k]} (expected {shapes[k]})" for k in shapes if k in found and found[k] != shapes[k]]
        extra = sorted(set(found) - set(shapes))
        if missing or wrong or extra:
            detail = "; ".join(
                ([f"missing {', '.join(name + '.' + k for k in missing)}"] if missing else [])
                + wrong + ([f"unexpected {', '.join(name + '.' + k for k in extra)}"] if extra else [])
            )
            raise CheckpointError(
                f"The {name} head in {where} does not fit its config.json ({detail}); export the fine-tuned model again."
            )

    arch = set(checkpoint.architectures)
    if "classifier" in checkpoint.heads:
        weight = checkpoint.heads["classifier"].get("weight", checkpoint.heads["classifier"].get("out_proj.weight"))
        n = int(weight.shape[0]) if weight is not None and weight.dim() == 2 else 0
        if SEQUENCE_CLASSIFICATION in arch or "out_proj.weight" in checkpoint.heads["classifier"]:
            expect("classifier", {"dense.weight": (hidden, hidden), "dense.bias": (hidden,),
                                  "out_proj.weight": (n, hidden), "out_proj.bias": (n,)})
        else:
            expect("classifier", {"weight": (n, hidden), "bias": (n,)})
        if n == 0:
            raise CheckpointError(f"The classifier head in {where} has no output rows; export the fine-tuned model again.")
    if "qa_outputs" in checkpoint.heads or QUESTION_ANSWERING in arch:
        expect("qa_outputs", {"weight": (2, hidden), "bias": (2,)})


def resolve_checkpoint(
    path_or_id: PathLike, *, revision: Optional[str] = None, local_files_only: bool = False
) -> Path:
    """A local folder, or a hub id (``name``, ``org/name``, ``org/name@revision``) fetched into
    the Hugging Face cache. ``local_files_only=True`` (or ``HF_HUB_OFFLINE=1``) never touches
    the network: use it wherever a missing checkpoint is not an error yet (building a config)."""
    if not str(path_or_id).strip():
        raise CheckpointError("The checkpoint is empty; give a local folder or a hub id such as 'org/name'.")
    path = Path(path_or_id).expanduser()
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as err:  # e.g. a name longer than the file system allows
        raise CheckpointError(f"{str(path_or_id)[:80]}... is neither a folder nor a hub id ({err.strerror}); check the path.") from None
    if is_dir:
        return path
    if exists:
        raise CheckpointError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    try:
        return hub.download(str(path_or_id), revision=revision, local_files_only=local_files_only)
    except hub.HubError as err:
        raise CheckpointError(str(err)) from None


def _problem(err: FileProblem, fix: str = "") -> CheckpointError:
    return CheckpointError(f"{str(err).rstrip('.')}." + (f" {fix}" if fix else ""))


def _regular(path: Path) -> Path:
    try:
        check_regular(path)
    except FileProblem as err:
        raise _problem(err) from None
    return path


def _read_weight_file(path: Path) -> StateDict:
    _regular(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"Could not read {path}: {err}. The file is truncated or corrupt; copy or export it again."
            ) from err
    _check_zip_sizes(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Refusing to load {path}: it contains pickled objects other than tensors, and code in a "
            "checkpoint is never executed. Convert it to model.safetensors with a trusted tool."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AssertionError, RecursionError) as err:
        raise CheckpointError(
            f"Could not read {path}: {err}. The file is truncated or corrupt; copy or export it again."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors.")
    return state


def _check_zip_sizes(path: Path) -> None:
    """A torch zip archive names each record's decompressed size in its directory: refuse one
    that would decompress to far more than the file itself holds (a zip bomb) before reading."""
    size = check_regular(path)
    if not zipfile.is_zipfile(path):
        return  # the legacy (pre-1.6) format: plain pickled storages, as large as the file
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"Could not read {path}: {err}. The file is truncated or corrupt; copy or export it again.") from None
    if total > size + _ZIP_SLACK_BYTES:
        raise CheckpointError(
            f"Refusing to load {path}: its records would decompress to {total:,} bytes from a {size:,}-byte file "
            "(torch saves tensors uncompressed; this is a zip bomb or a corrupt file). Use model.safetensors."
        )


_SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def weight_files(directory: Path) -> List[Path]:
    """The weight files to read, in the first layout found (see ``WEIGHT_FILES``). Shard names
    from an ``*.index.json`` must be plain file names in ``directory``: an index is data, and
    ``../x.safetensors`` or ``/etc/...`` must not make us read outside the checkpoint."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if not name.endswith(".index.json"):
            return [_regular(path)]
        try:
            with reading(path):
                weight_map = read_json(path)["weight_map"]
                shards = sorted(set(weight_map.values()))
                if not all(isinstance(shard, str) for shard in shards):
                    raise ValueError("weight_map values must be file names")
        except FileProblem as err:
            raise _problem(err, "Copy or export the checkpoint again.") from None
        suffix = name[: -len(".index.json")].rsplit(".", 1)[-1]
        for shard in shards:
            if not _SHARD_NAME.fullmatch(shard) or not shard.endswith("." + suffix):
                raise CheckpointError(
                    f"{path} names shard {shard!r}, which is not a .{suffix} file in {directory}; "
                    "shards must be plain file names next to the index. Refusing to read it."
                )
            if not (directory / shard).exists():
                raise CheckpointError(f"Shard {shard} listed in {path} is missing; copy all shards.")
        return [_regular(directory / shard) for shard in shards]
    raise CheckpointError(
        f"No weights in {directory}: expected one of {', '.join(WEIGHT_FILES)}. TensorFlow or Flax "
        "checkpoints must first be converted with `transformers` (save_pretrained)."
    )


def read_config(directory: Path) -> Tuple[ElectraConfig, Dict[str, Any]]:
    """config.json as our config plus the raw dict, refusing what is not ELECTRA or BERT, or has
    values out of range, before anything is built from it."""
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory} has no config.json; an HF-format checkpoint needs one.")
    try:
        raw = read_json(config_path)
    except FileProblem as err:
        raise _problem(err, "Use the config.json that came with these weights.") from None
    model_type = raw.get("model_type", "electra")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{config_path} describes a {model_type!r} model; spacy-electra loads ELECTRA and "
            "BERT-layout encoders (model_type 'electra' or 'bert')."
        )
    try:
        with reading(config_path):
            config = ElectraConfig.from_hf_dict(raw)
    except FileProblem as err:
        raise _problem(err, "Use the config.json that came with these weights.") from None
    return config, raw


def _weight_shapes(paths: List[Path]) -> Optional[Dict[str, Tuple[str, Tuple[int, ...]]]]:
    """Dtype and shape of every tensor, from the safetensors headers alone; ``None`` for
    pytorch_model.bin, whose shapes are only known once it is loaded."""
    if any(p.suffix != ".safetensors" for p in paths):
        return None
    header: Dict[str, Tuple[str, Tuple[int, ...]]] = {}
    for path in paths:
        try:
            header.update(safetensors_header_from_file(path))
        except FileProblem as err:
            raise _problem(err, "Copy or export it again.") from None
    return header


def _check_against_config(
    header: Dict[str, Tuple[str, Tuple[int, ...]]], config: ElectraConfig, kind: Optional[str],
    prefix: str, directory: Path,
) -> str:
    """Dtypes, layer count and every shape, before a tensor is read or a module built. Returns
    the kind to build (detected unless given)."""
    try:
        cast = check_dtypes(header, str(directory), IGNORED)
    except FileProblem as err:
        raise _problem(err) from None
    if cast:
        warnings.warn(
            f"{directory} stores weights as {', '.join(cast)}; they are converted to float32 on load.",
            stacklevel=4,
        )
    names = normalise_names(header, prefix)
    detected = detect_kind_from_names(names)
    kind = kind or detected
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"kind={kind!r} is not one of {', '.join(MODEL_CLASSES)}.")
    if kind != "encoder" and kind != detected:
        raise CheckpointError(
            f"{directory} holds an ELECTRA {detected}, not a {kind}; load it with kind={detected!r} "
            "or kind='encoder'."
        )
    n_layers = layer_count(names.values(), HF_LAYER)
    if n_layers != config.num_hidden_layers:
        raise CheckpointError(
            f"{directory / 'config.json'} says num_hidden_layers={config.num_hidden_layers} but the "
            f"weights hold {n_layers} layers (missing weights: encoder.layer.{min(n_layers, config.num_hidden_layers)}"
            "...); use the config.json that belongs to these weights."
        )
    expected = _hf_shapes(config, kind)
    pretraining_heads = ("discriminator_predictions.", "generator_predictions.", "generator_lm_head.")
    unexpected = sorted(
        name for name in names.values()
        if name not in expected and not FINETUNED_HEADS.match(name) and not name.startswith(pretraining_heads)
    )
    if unexpected:  # refused from the header, before any tensor is read
        raise CheckpointError(
            f"The checkpoint {directory} does not match an ELECTRA {kind} with this config.json ({len(unexpected):,} "
            f"unexpected weights: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}); use the checkpoint's own config.json."
        )
    shapes = {names[key]: shape for key, (_, shape) in header.items() if key in names}
    try:
        compare_shapes(expected, shapes, f"{directory / 'config.json'}", str(directory))
    except FileProblem as err:
        raise _problem(err) from None
    return kind


def _hf_shapes(config: ElectraConfig, kind: str) -> Dict[str, Tuple[int, ...]]:
    """The shapes ``config`` implies, under HF names (prefix stripped)."""
    ours = our_shapes(config, kind)
    shapes = {theirs: ours[name] for name, theirs in name_pairs(config, kind)}
    for i in range(config.num_hidden_layers):
        name, parts = qkv_names(i)
        for param in ("weight", "bias"):
            fused = ours[f"{name}.{param}"]
            for part in parts:
                shapes[f"{part}.{param}"] = (fused[0] // 3,) + fused[1:]
    return shapes



def read_vocabulary(directory: PathLike, *, vocab_size: Optional[int] = None) -> WordPieceEncoder:
    """The WordPiece vocabulary of a checkpoint folder, read like the rest of it (regular files
    of bounded size, settings type-checked) and, given the model's ``vocab_size``, refused when
    it has more pieces than the model has embeddings."""
    directory = Path(directory)
    vocab_path, settings_path = directory / "vocab.txt", directory / "tokenizer_config.json"
    if not vocab_path.exists():
        raise CheckpointError(f"{directory} has no vocab.txt; an ELECTRA checkpoint needs its WordPiece vocabulary.")
    try:
        vocab = read_text(vocab_path, MAX_VOCAB_BYTES).splitlines()
        settings = read_json(settings_path) if settings_path.exists() else {}
        with reading(settings_path):
            options = {
                "lowercase": settings.get("do_lower_case", True),
                "strip_accents": settings.get("strip_accents"),
                "tokenize_chinese_chars": settings.get("tokenize_chinese_chars", True),
            }
            if not all(isinstance(v, bool) or (k == "strip_accents" and v is None) for k, v in options.items()):
                raise ValueError("do_lower_case, strip_accents and tokenize_chinese_chars must be true/false")
        wordpiece = WordPieceEncoder(vocab, **options)
        if vocab_size is not None:
            wordpiece.check_fits(vocab_size, str(vocab_path))
    except FileProblem as err:
        raise _problem(err) from None
    except VocabError as err:
        named = str(err) if str(vocab_path) in str(err) else f"{vocab_path}: {err}"
        raise CheckpointError(named) from None
    return wordpiece




def load_checkpoint(
    path_or_id: PathLike, *, kind: Optional[str] = None, revision: Optional[str] = None, local_files_only: bool = False,
) -> ElectraEncoder:
    """The model a checkpoint holds (``kind`` detected unless given; ``"encoder"`` drops a
    pretraining head): ``read_checkpoint(...).build(kind)`` for callers that want the module only."""
    checkpoint = read_checkpoint(path_or_id, kind=kind, revision=revision, local_files_only=local_files_only, vocab="optional")
    left_behind_warning(checkpoint)
    return checkpoint.build(kind)
