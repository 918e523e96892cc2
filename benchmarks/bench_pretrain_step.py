"""Tokens/s of one RTD training step: ours against a straightforward loop over HF modules.

One step = dynamic masking, generator forward, Gumbel sampling, discriminator forward, the
weighted loss, backward, gradient clipping and an AdamW update; data loading is excluded from
both. The HF loop is what a direct port looks like: ElectraForMaskedLM with labels (full-vocabulary
logits at every position), sampling from the logits at the masked positions, ElectraForPreTraining
with labels, embeddings shared and the LM head tied.

  python benchmarks/bench_pretrain_step.py --device cpu --threads 1 --precision fp32 bf16 --hf
  python benchmarks/bench_pretrain_step.py --device cuda --sizes small base --precision bf16 --json out.json

On GPU it also reports model-FLOPs utilisation (MFU): matmul FLOPs of both networks (6 x params
x tokens, plus attention scores, plus the generator's vocabulary projection at the masked
positions only), against the dense bf16 peak of the card.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spacy_electra.pretrain.config import PretrainConfig  # noqa: E402
from spacy_electra.pretrain.masking import gumbel_max_sample, mask_tokens, replace_tokens, token_types  # noqa: E402
from spacy_electra.pretrain.objective import ReplacedTokenDetection  # noqa: E402
from spacy_electra.pretrain.optim import build_optimizer  # noqa: E402
from spacy_electra.pretrain.trainer import autocast  # noqa: E402

VOCAB, PAD, CLS, SEP, MASK = 30522, 0, 2, 3, 4
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def batch(size: int, length: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (size, length), generator=gen)
    ids[:, 0], ids[:, length // 2], ids[:, -1] = CLS, SEP, SEP
    return ids.to(device)


def model_flops(config: PretrainConfig, tokens: int, selected: int, length: int) -> float:
    total = 0.0
    for cfg in (config.discriminator_config(VOCAB), config.generator_config(VOCAB)):
        h, f, e, n = cfg.hidden_size, cfg.intermediate_size, cfg.embedding_size, cfg.num_hidden_layers
        per_layer = 4 * h * h + 2 * h * f
        params = n * per_layer + (e * h if e != h else 0)
        total += 6 * params * tokens + 12 * n * h * length * tokens  # attention scores and values
    d = config.discriminator_config(VOCAB)
    g = config.generator_config(VOCAB)
    total += 6 * (d.hidden_size * d.hidden_size + d.hidden_size) * tokens  # discriminator head
    total += 6 * (g.hidden_size * g.embedding_size + g.embedding_size * VOCAB) * selected  # generator head
    return total


def ours(config: PretrainConfig, device: torch.device, precision: str):
    torch.manual_seed(0)
    model = ReplacedTokenDetection(config.discriminator_config(VOCAB), config.generator_config(VOCAB)).to(device)
    opt = build_optimizer(model, config.training, fused=device.type == "cuda")

    def step(ids):
        masked = mask_tokens(ids, mask_id=MASK, special_ids=[PAD, CLS, SEP])
        attention = (ids != PAD).long()
        types = token_types(ids, SEP, PAD)
        with autocast(device, precision):
            out = model(masked, ids, attention, types)
        loss = out["gen_loss_sum"] / masked.selected.sum() + 50.0 * out["disc_loss_sum"] / attention.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return masked.selected.sum()

    return step


def hf_loop(config: PretrainConfig, device: torch.device, precision: str):
    import transformers

    def hf_config(cfg):
        return transformers.ElectraConfig(
            vocab_size=VOCAB, embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size, hidden_act="gelu",
        )

    torch.manual_seed(0)
    disc = transformers.ElectraForPreTraining(hf_config(config.discriminator_config(VOCAB))).to(device)
    gen = transformers.ElectraForMaskedLM(hf_config(config.generator_config(VOCAB))).to(device)
    gen.electra.embeddings = disc.electra.embeddings
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    params = list({id(p): p for p in list(disc.parameters()) + list(gen.parameters())}.values())
    opt = torch.optim.AdamW(params, lr=5e-4, eps=1e-6, weight_decay=0.01)
    disc.train(), gen.train()

    def step(ids):
        masked = mask_tokens(ids, mask_id=MASK, special_ids=[PAD, CLS, SEP])
        attention = (ids != PAD).long()
        types = token_types(ids, SEP, PAD)
        labels = ids.masked_fill(~masked.selected, -100)
        with autocast(device, precision):
            g = gen(input_ids=masked.input_ids, attention_mask=attention, token_type_ids=types, labels=labels)
            sampled = gumbel_max_sample(g.logits[masked.selected])
            corrupted, replaced = replace_tokens(ids, masked.selected, sampled)
            d = disc(input_ids=corrupted, attention_mask=attention, token_type_ids=types, labels=replaced.long())
            loss = g.loss + 50.0 * d.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return masked.selected.sum()

    return step


def timed(step, ids, device: torch.device, warmup: int, steps: int) -> Dict[str, float]:
    for _ in range(warmup):
        step(ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    selected = 0
    for _ in range(steps):
        selected += step(ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"seconds_per_step": seconds, "tokens_per_s": ids.numel() / seconds, "selected": int(selected) / steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", nargs="+", default=["small"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--base-batch", type=int, default=None, help="batch for base/large (default --batch)")
    p.add_argument("--base-length", type=int, default=None)
    p.add_argument("--precision", nargs="+", default=["fp32"])
    p.add_argument("--hf", action="store_true", help="also time the straightforward HF loop (fp32)")
    p.add_argument("--hf-precision", nargs="+", default=["fp32"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = next((v for k, v in PEAK_BF16.items() if gpu and k in gpu), None)
    results: List[Dict] = []
    for size in args.sizes:
        big = size in ("base", "large")
        bsz = args.base_batch if big and args.base_batch else args.batch
        length = args.base_length if big and args.base_length else args.length
        config = PretrainConfig.from_dict({"model": {"size": size}, "corpus": {"seq_length": min(length, 512)}})
        ids = batch(bsz, length, device)
        runs = [("ours", prec, ours) for prec in args.precision]
        if args.hf:
            runs += [("hf_loop", prec, hf_loop) for prec in args.hf_precision]
        for name, prec, factory in runs:
            try:
                res = timed(factory(config, device, prec), ids, device, args.warmup, args.steps)
            except Exception as err:  # keep measuring the rest (e.g. out of memory)
                res = {"error": repr(err)[:300]}
            res.update(impl=name, size=size, precision=prec, batch=bsz, length=length, device=str(device),
                       gpu=gpu, threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
                       torch=torch.__version__)
            if "seconds_per_step" in res:
                flops = model_flops(config, ids.numel(), res["selected"], length)
                res["model_tflops_per_step"] = flops / 1e12
                res["achieved_tflops"] = flops / res["seconds_per_step"] / 1e12
                if peak:
                    res["mfu"] = flops / res["seconds_per_step"] / peak
            results.append(res)
            print(json.dumps(res), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    base = {(r["size"]): r for r in results if r["impl"] == "hf_loop" and r["precision"] == "fp32" and "tokens_per_s" in r}
    print("\nsize   impl     precision  tokens/s   x HF fp32   MFU")
    for r in results:
        if "tokens_per_s" not in r:
            print(f"{r['size']:6} {r['impl']:8} {r['precision']:9}  error: {r['error'][:80]}")
            continue
        ratio = r["tokens_per_s"] / base[r["size"]]["tokens_per_s"] if r["size"] in base else float("nan")
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
        print(f"{r['size']:6} {r['impl']:8} {r['precision']:9} {r['tokens_per_s']:9.0f}   {ratio:6.2f}     {mfu}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
