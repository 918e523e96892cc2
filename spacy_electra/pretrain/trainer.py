"""The pretraining loop: data stream, masking, loss scaling, DDP, logging, checkpoints, export.

Reproducibility is by construction rather than by saved RNG streams: every micro-batch seeds
torch from (seed, step, global micro-batch index) before masking and before its forward pass
(dropout, Gumbel noise). A micro-batch therefore sees the same randomness whether it runs in
process 0 of 1 with gradient accumulation, in process 1 of 2, or after a resume. Losses are
sums divided by counts over the whole global batch, so the update does not depend on how the
batch is split. RNG states are still checkpointed for anything outside that scheme.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..atomic import atomic_file, atomic_folder
from ..checkpoint import CheckpointError, save_checkpoint
from ..checkpoint.reader import read_vocabulary
from ..checkpoint.training_state import read_training_state
from ..gpu import gpu_problem
from ..pieces import WordPieceEncoder
from .config import PretrainConfig, TrainingSettings, write_config
from .corpus import PackedCorpus, open_or_build
from .init import InitSources, build_from_init, read_init
from .masking import Masked, mask_tokens, token_types
from .objective import AUC_BINS, MaskedLanguageModel, ReplacedTokenDetection, histogram_auc
from .optim import build_optimizer, build_scheduler

if TYPE_CHECKING:  # pragma: no cover
    from torch.nn.parallel import DistributedDataParallel as DDP

Callback = Callable[[int, Optional[Dict[str, float]]], None]
Objective = Union[ReplacedTokenDetection, MaskedLanguageModel]
CHECKPOINT = "checkpoints/last.pt"
STAT_NAMES = ("gen_correct", "sampled_correct", "disc_correct", "replaced", "replaced_found")


class PretrainError(RuntimeError):
    """A run that cannot start or continue; the message says what to do."""


# -- process / device setup ---------------------------------------------------------------------
def distributed_env() -> Tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda":
        problem = gpu_problem(device.index if device.index is not None else local_rank, need_cupy=False)
        if problem is not None:
            raise PretrainError(f"training.device is {setting!r}: {problem.replace('--gpu-id -1', '--training.device cpu')}")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def seed_for(seed: int, step: int, micro: int, purpose: int) -> int:
    """A 63-bit seed unique to (seed, step, micro-batch, purpose)."""
    return int(np.random.SeedSequence([seed, step, micro, purpose]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_objective(
    config: PretrainConfig, vocab: WordPieceEncoder, init: Optional[InitSources] = None, *, log: bool = False
) -> Objective:
    """The networks at step 0: random (seeded by the caller), or from ``init``'s checkpoints."""
    if init is not None:
        return build_from_init(config, init, log=log)
    if config.model.objective == "mlm":
        return MaskedLanguageModel(config.generator_config(vocab.vocab_size, vocab.pad_id))
    return ReplacedTokenDetection(
        config.discriminator_config(vocab.vocab_size, vocab.pad_id),
        config.generator_config(vocab.vocab_size, vocab.pad_id),
        config.model.discriminator_weight,
    )


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


# -- checkpoints --------------------------------------------------------------------------------
def _rng_state() -> Dict[str, Any]:
    # The legacy form (the default): ("MT19937", keys, pos, has_gauss, cached_gaussian).
    np_state = cast(Tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _write_failed(path: Path, err: OSError) -> PretrainError:
    if err.errno == errno.ENOSPC:
        return PretrainError(f"No space left on the device writing {path}; the previous checkpoint is intact: "
                             f"free some space and continue with --resume.")
    return PretrainError(f"Could not write {path} ({err.strerror or err}); the previous checkpoint is intact: "
                         f"fix that and continue with --resume.")


def save_training_state(path: Path, payload: Dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename: a crash or a
    full disk leaves either the previous checkpoint or the new one, never a torn file."""
    try:
        with atomic_file(path) as tmp:
            torch.save(payload, tmp)
    except OSError as err:
        raise _write_failed(path, err) from err


def load_training_state(path: Path, device: torch.device) -> Dict[str, Any]:
    if not path.exists():
        raise PretrainError(f"--resume: no checkpoint at {path}; start without --resume.")
    try:
        state = read_training_state(path, device)
    except CheckpointError as err:
        raise PretrainError(
            f"--resume: {path} is not a readable checkpoint ({err}); it was cut short or "
            f"changed outside training: restore a copy, or start again without --resume in a new --output."
        ) from err
    keys = set(state) if isinstance(state, dict) else set()
    missing = sorted({"model", "optimizer", "scheduler", "scaler", "rng", "step", "examples"} - keys)
    if missing:
        raise PretrainError(f"--resume: {path} lacks {', '.join(missing)}; it is not a pretraining checkpoint "
                            f"of this package: start without --resume.")
    return state


def export_models(model: Objective, output: Path, vocab: WordPieceEncoder) -> List[Path]:
    """HF-format folders (``discriminator`` and ``generator``, or ``mlm``) that ``transformers``
    and the spaCy components load as ``checkpoint``. Each is written under a temporary name and
    renamed when complete, so a folder with a config.json is always a whole export."""
    if isinstance(model, ReplacedTokenDetection):
        parts = {"discriminator": model.discriminator, "generator": model.generator}
    else:
        parts = {"mlm": model.generator}
    written = []
    for name, network in parts.items():
        try:
            with atomic_folder(output / name) as tmp:
                save_checkpoint(network, tmp, vocab=vocab)
        except OSError as err:
            raise PretrainError(
                f"Could not export {output / name} ({err.strerror or err}); the checkpoint "
                f"{output / CHECKPOINT} is intact: fix that and run again with --resume to export."
            ) from err
        written.append(output / name)
    return written


def truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (the resumed checkpoint's): the steps after it
    are trained again, and their lines would repeat. An unreadable (half-written) line goes too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    with atomic_file(path) as tmp:
        tmp.write_text("".join(kept), encoding="utf8")


# -- metrics ------------------------------------------------------------------------------------
def binary_entropy(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def summarise(sums: Tensor, objective: str) -> Dict[str, float]:
    """Interval sums [gen_loss, disc_loss, *STAT_NAMES, AUC histograms (2 x AUC_BINS), n_selected,
    n_tokens] -> means."""
    n_stats = len(STAT_NAMES)
    histograms = sums[2 + n_stats : 2 + n_stats + 2 * AUC_BINS]
    counts = torch.cat([sums[: 2 + n_stats], sums[2 + n_stats + 2 * AUC_BINS :]])
    values = dict(zip(("gen_loss", "disc_loss") + STAT_NAMES + ("n_selected", "n_tokens"), counts.tolist()))
    n_sel, n_tok = max(values["n_selected"], 1.0), max(values["n_tokens"], 1.0)
    out = {
        "gen_loss": values["gen_loss"] / n_sel,
        "gen_acc": values["gen_correct"] / n_sel,
    }
    if objective == "rtd":
        replaced = values["replaced"] / n_tok
        out.update(
            disc_loss=values["disc_loss"] / n_tok,
            disc_acc=values["disc_correct"] / n_tok,
            prior_acc=1.0 - replaced,
            # the loss of always predicting the replaced fraction: below it, the discriminator
            # has learnt something even while its accuracy still equals the prior
            prior_loss=binary_entropy(replaced),
            replaced_frac=replaced,
            disc_recall=values["replaced_found"] / max(values["replaced"], 1.0),
            # 0.5 is chance, whatever the prior
            disc_auc=histogram_auc(histograms[:AUC_BINS], histograms[AUC_BINS:]),
            sampled_acc=values["sampled_correct"] / n_sel,
        )
    return out


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class _Process:
    """This process's place in the run: its rank among ``world`` and the device it trains on."""

    rank: int
    world: int
    device: torch.device
    micro: int  # examples per micro-batch
    started_dist: bool  # this call opened the process group, so it closes it too

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class _Run:
    """What the loop reads and advances: model and optimiser, the position in the data, and the
    sums and clock of the interval that the next log line reports."""

    config: PretrainConfig
    output: Path
    proc: _Process
    vocab: WordPieceEncoder
    corpus: PackedCorpus
    model: Objective
    trained: nn.Module  # the model, or its DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    interval: Tensor  # [gen_loss, disc_loss, *STAT_NAMES, AUC histograms, n_selected, n_tokens] since the last log line
    step: int = 0
    examples: int = 0
    session_steps: int = 0  # steps of this invocation, for training.stop_after_steps
    tick: float = 0.0
    tick_step: int = 0
    bar: Any = None
    last: Dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint_path(self) -> Path:
        return self.output / CHECKPOINT

    @property
    def log_path(self) -> Path:
        return self.output / "train_log.jsonl"


class _MicroBatch(NamedTuple):
    micro: int  # global micro-batch index within the step: it seeds masking and the forward pass
    ids: Tensor
    attention: Tensor
    types: Tensor
    masked: Masked


def pretrain(
    config: PretrainConfig,
    output: Union[str, Path],
    *,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
) -> Dict[str, Any]:
    """Train per ``config``, writing logs, checkpoints and exported models under ``output``.
    Returns the last logged metrics. Under ``torchrun`` each process calls this."""
    output = Path(output)
    proc = _setup_process(config.training)
    init = read_init(config)  # refused here, before a corpus is built
    vocab, corpus = _open_corpus(config, output, proc, init)
    run = _build_run(config, output, proc, vocab, corpus, init)
    if resume:
        _restore(run)
    _start_loop(run)
    while _more_steps(run):
        _train_step(run)
        metrics = _log_if_due(run)
        if _checkpoint_due(run):
            _save_checkpoint(run)
        for callback in callbacks:
            callback(run.step, metrics)
    _finish(run)
    return run.last


def _setup_process(t: TrainingSettings) -> _Process:
    """Pick the device, join torchrun's process group, and check that the batch splits evenly."""
    rank, world, local_rank = distributed_env()
    device = resolve_device(t.device, local_rank)
    started_dist = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # generous timeout: the other ranks wait while rank 0 builds the corpus
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=2))
        started_dist = True
    micro_global = world * t.grad_accumulation
    if t.batch_size % micro_global:
        raise PretrainError(
            f"training.batch_size={t.batch_size} must be divisible by processes x grad_accumulation "
            f"= {world} x {t.grad_accumulation}."
        )
    if t.precision == "fp16" and device.type != "cuda":
        raise PretrainError("training.precision='fp16' needs a GPU; use 'bf16' or 'fp32' on CPU.")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return _Process(rank, world, device, t.batch_size // micro_global, started_dist)


def _open_corpus(
    config: PretrainConfig, output: Path, proc: _Process, init: Optional[InitSources] = None
) -> Tuple[WordPieceEncoder, PackedCorpus]:
    """Rank 0 writes config.cfg and builds (or reopens) the packed corpus; the other ranks wait for
    it at a barrier and then open what it wrote, so the corpus is built once. A run from [init]
    tokenizes with the checkpoint's vocabulary, which rank 0 writes to OUTPUT/vocab."""
    if init is not None:
        vocab, vocab_dir = init.vocab, output / "vocab"
    elif not config.corpus.vocab:
        raise PretrainError("corpus.vocab is empty: point it at a folder with vocab.txt (see `spacy-electra vocab`), "
                            "or start from a checkpoint with init.discriminator.")
    else:
        vocab, vocab_dir = read_vocabulary(config.corpus.vocab), Path(config.corpus.vocab)
    cache = Path(config.corpus.cache) if config.corpus.cache else output / "corpus"
    corpus: Optional[PackedCorpus] = None
    if proc.is_main:
        output.mkdir(parents=True, exist_ok=True)
        write_config(config, output / "config.cfg")
        if init is not None:
            try:
                with atomic_folder(vocab_dir) as tmp:
                    vocab.save(tmp)
            except OSError as err:
                raise _write_failed(vocab_dir, err) from err
        corpus = open_or_build(
            cache, config.corpus.train, vocab_dir, seq_length=config.corpus.seq_length,
            fmt=config.corpus.format, workers=config.corpus.workers, seed=config.training.seed,
            short_seq_prob=config.corpus.short_seq_prob, single_segment_prob=config.corpus.single_segment_prob,
            max_documents=config.corpus.max_documents, join_documents=config.corpus.join_documents,
        )
    if proc.world > 1:
        dist.barrier()
    return vocab, corpus if corpus is not None else PackedCorpus(cache)


def _build_run(
    config: PretrainConfig, output: Path, proc: _Process, vocab: WordPieceEncoder, corpus: PackedCorpus,
    init: Optional[InitSources] = None,
) -> _Run:
    """Model, optimiser, schedule and loss scaler at step 0, seeded so every rank starts alike."""
    t = config.training
    torch.manual_seed(t.seed)
    model = build_objective(config, vocab, init, log=proc.is_main).to(proc.device)
    optimizer = build_optimizer(model, t, fused=proc.device.type == "cuda")
    scheduler = build_scheduler(optimizer, t)
    scaler = torch.amp.GradScaler(proc.device.type, enabled=t.precision == "fp16")
    interval = torch.zeros(2 + len(STAT_NAMES) + 2 * AUC_BINS + 2, device=proc.device)
    return _Run(config, output, proc, vocab, corpus, model, model, optimizer, scheduler, scaler, interval)


def _restore(run: _Run) -> None:
    """Continue from the checkpoint; the log drops the lines of the steps after it, which run again."""
    state = load_training_state(run.checkpoint_path, run.proc.device)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    run.step, run.examples = int(state["step"]), int(state["examples"])
    if run.proc.is_main:
        truncate_log(run.log_path, run.step)
        print(f"Resumed from {run.checkpoint_path} at step {run.step}", file=sys.stderr)


def _start_loop(run: _Run) -> None:
    """Wrap the (restored) model for DDP, open the progress bar, and start the interval's clock."""
    t = run.config.training
    if run.proc.world > 1:
        run.trained = DistributedDataParallel(run.model)
    if run.proc.is_main and t.progress_bar:
        from tqdm import tqdm

        run.bar = tqdm(total=t.max_steps, initial=run.step, unit="step", dynamic_ncols=True, mininterval=2.0)
    run.tick, run.tick_step = time.perf_counter(), run.step
    run.model.train()


def _more_steps(run: _Run) -> bool:
    """Until max_steps, or until this invocation has run training.stop_after_steps."""
    t = run.config.training
    return run.step < t.max_steps and (t.stop_after_steps is None or run.session_steps < t.stop_after_steps)


def _train_step(run: _Run) -> None:
    """One optimiser update on the global batch; then the step, the examples and the bar advance."""
    batches, counts = _masked_micro_batches(run)
    _accumulate_gradients(run, batches, counts)
    _apply_update(run)
    run.step += 1
    run.session_steps += 1
    run.examples += run.config.training.batch_size
    if run.bar is not None:
        run.bar.update(1)
    _announce_cost(run)


def _masked_micro_batches(run: _Run) -> Tuple[List[_MicroBatch], Tensor]:
    """This rank's micro-batches of the step, masked, and the global [n_selected, n_tokens] that the
    losses divide by, so that the update does not depend on how the batch is split."""
    t, m, proc, vocab = run.config.training, run.config.model, run.proc, run.vocab
    micro, device = proc.micro, proc.device
    first = run.examples + proc.rank * t.grad_accumulation * micro
    rows = torch.from_numpy(run.corpus.batch(first, t.grad_accumulation * micro, t.seed))
    if device.type == "cuda":  # a copy from pageable memory would wait for the GPU's queue
        rows = rows.pin_memory()
    rows = rows.to(device, non_blocking=True)
    special = [vocab.pad_id, vocab.cls_id, vocab.sep_id]
    batches: List[_MicroBatch] = []
    counts = torch.zeros(2, device=device)
    for i in range(t.grad_accumulation):
        j = proc.rank * t.grad_accumulation + i  # global micro-batch index within the step
        ids = rows[i * micro : (i + 1) * micro]
        attention = ids != vocab.pad_id
        if device.type == "cpu":  # trim shared padding columns (a GPU sync elsewhere)
            width = int(attention.sum(1).max())
            ids, attention = ids[:, :width], attention[:, :width]
        torch.manual_seed(seed_for(t.seed, run.step, j, 0))
        masked = mask_tokens(ids, mask_id=vocab.mask_id, special_ids=special,
                             mask_prob=m.mask_prob, mask_token_prob=m.mask_token_prob)
        types = token_types(ids, vocab.sep_id, vocab.pad_id)
        counts += torch.stack([masked.selected.sum(), attention.sum()]).float()
        batches.append(_MicroBatch(j, ids, attention.long(), types, masked))
    if proc.world > 1:
        dist.all_reduce(counts)
    return batches, counts


def _accumulate_gradients(run: _Run, batches: List[_MicroBatch], counts: Tensor) -> None:
    """Forward and backward each micro-batch (DDP syncs gradients on the last), adding its sums to
    the interval's."""
    t, world = run.config.training, run.proc.world
    n_selected, n_tokens = counts[0], counts[1]
    temperature = run.config.model.temperature_at(run.step)
    for i, batch in enumerate(batches):
        sync = world == 1 or i == len(batches) - 1
        with (contextlib.nullcontext() if sync else cast("DDP", run.trained).no_sync()):  # world > 1: the DDP wrapper
            torch.manual_seed(seed_for(t.seed, run.step, batch.micro, 1))
            with autocast(run.proc.device, t.precision):
                out = run.trained(batch.masked, batch.ids, batch.attention, batch.types, temperature)
            loss = (out["gen_loss_sum"] / n_selected
                    + run.config.model.discriminator_weight * out["disc_loss_sum"] / n_tokens)
            # DDP averages gradients over the processes; x world makes that the global sum
            run.scaler.scale(loss * world).backward()
        run.interval += torch.cat([
            torch.stack([out["gen_loss_sum"].detach(), out["disc_loss_sum"].detach()]).float(),
            out["stats"], torch.stack([batch.masked.selected.sum(), batch.attention.sum()]).float(),
        ])


def _apply_update(run: _Run) -> None:
    """Unscale and clip the gradients, step the optimiser, scaler and schedule, clear the gradients."""
    max_grad_norm = run.config.training.max_grad_norm
    run.scaler.unscale_(run.optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)


def _announce_cost(run: _Run) -> None:
    """After the session's first step, unless a log line is due anyway: the first log line may be
    log_every steps away, so say now what the run will cost."""
    t = run.config.training
    if not (run.session_steps == 1 and run.proc.is_main and run.step % t.log_every and run.step < t.max_steps):
        return
    took = time.perf_counter() - run.tick
    line = (f"step {run.step}/{t.max_steps}: the first step took {took:.1f}s; at that rate the run ends in "
            f"{format_duration(took * (t.max_steps - run.step))} (every {t.log_every} steps a line gives the "
            f"measured rate)")
    (run.bar.write if run.bar is not None else print)(line, file=sys.stderr)


def _log_if_due(run: _Run) -> Optional[Dict[str, Any]]:
    """Every log_every steps and at the last: turn the interval's sums (over all ranks) into means
    and rates, and have rank 0 log them. Returns them, or None between log lines."""
    t = run.config.training
    if run.step % t.log_every and run.step != t.max_steps:
        return None
    if run.proc.world > 1:
        dist.all_reduce(run.interval)
    now = time.perf_counter()
    metrics: Dict[str, Any] = summarise(run.interval.cpu(), run.config.model.objective)
    seconds_per_step = (now - run.tick) / max(run.step - run.tick_step, 1)
    metrics.update(
        step=run.step, max_steps=t.max_steps, examples=run.examples, lr=run.scheduler.get_last_lr()[0],
        tokens_per_s=float(run.interval[-1]) / max(now - run.tick, 1e-9),
        seconds_per_step=seconds_per_step, eta_seconds=seconds_per_step * (t.max_steps - run.step),
    )
    if run.config.model.sampling_temperature_steps and run.config.model.objective == "rtd":  # mlm: no sampling
        metrics["temperature"] = run.config.model.temperature_at(run.step - 1)  # the last step's
    run.interval.zero_()
    run.tick, run.tick_step = now, run.step
    if run.proc.is_main:
        _write_log_line(run, metrics)
    run.last = metrics
    return metrics


def _write_log_line(run: _Run, metrics: Dict[str, Any]) -> None:
    """Append the metrics to train_log.jsonl and print them as one line, above the bar if any."""
    try:
        with open(run.log_path, "a", encoding="utf8") as f:
            f.write(json.dumps(metrics) + "\n")
    except OSError as err:
        raise _write_failed(run.log_path, err) from err
    line = format_metrics(metrics)
    if run.bar is not None:
        run.bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _checkpoint_due(run: _Run) -> bool:
    t = run.config.training
    return run.step % t.checkpoint_every == 0 or run.step == t.max_steps


def _save_checkpoint(run: _Run) -> None:
    """Rank 0 writes everything a resume needs; the ranks hold the same state, so one copy does."""
    if run.proc.is_main:
        save_training_state(run.checkpoint_path, {
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "rng": _rng_state(),
            "step": run.step, "examples": run.examples, "world_size": run.proc.world,
            "config": run.config.to_dict(),
        })


def _finish(run: _Run) -> None:
    """Rank 0 checkpoints where the session stopped (unless the loop just did) and exports the
    models once max_steps is reached; every rank waits for that before the process group closes."""
    if run.bar is not None:
        run.bar.close()
    if run.proc.is_main:
        if not _checkpoint_due(run):
            _save_checkpoint(run)
        if run.step >= run.config.training.max_steps:
            export_models(run.model, run.output, run.vocab)
    if run.proc.world > 1:
        dist.barrier()
        if run.proc.started_dist:
            dist.destroy_process_group()


def DistributedDataParallel(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def format_metrics(metrics: Dict[str, float]) -> str:
    """One progress line: where the run is, whether the discriminator beats its prior (always
    predicting "original"), how fast it goes and when it will end."""
    parts = [f"step {metrics['step']}/{metrics['max_steps']}", f"gen_loss {metrics['gen_loss']:.3f}",
             f"gen_acc {metrics['gen_acc']:.3f}"]
    if "disc_loss" in metrics:
        parts += [
            f"disc_loss {metrics['disc_loss']:.4f} (prior {metrics['prior_loss']:.4f})",
            f"disc_acc {metrics['disc_acc']:.4f} (prior {metrics['prior_acc']:.4f})",
            f"replaced {metrics['replaced_frac']:.3f}",
            f"recall {metrics['disc_recall']:.3f}",
            f"disc_auc {metrics['disc_auc']:.3f}" if metrics.get("disc_auc") is not None else "disc_auc -",
        ]
    steps_per_s = 1.0 / max(metrics["seconds_per_step"], 1e-9)
    if "temperature" in metrics:
        parts.append(f"temperature {metrics['temperature']:.2f}")
    parts += [f"{steps_per_s:.3g} steps/s", f"{metrics['tokens_per_s']:.0f} tok/s", f"lr {metrics['lr']:.2e}",
              f"ETA {format_duration(metrics['eta_seconds'])}"]
    return " | ".join(parts)
