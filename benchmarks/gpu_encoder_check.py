"""GPU check of the windowed encoder behind `electra_transformer` (pure torch, no spaCy needed).

Compares piece vectors of an ELECTRA-small-shaped encoder over a batch of windows: CPU fp32 vs
GPU fp32, and GPU under autocast (bf16, fp16: what `mixed_precision = true` runs), then runs one
fp16 training step with a gradient scaler and checks every gradient is finite.
Usage: python benchmarks/gpu_encoder_check.py [--device cpu]   (cpu: a dry run of the script)
"""
import sys
import time

import numpy as np
import torch

from spacy_electra.torch_model.windowed import WindowedEncoder
from spacy_electra.torch_model import ElectraConfig, ElectraEncoder
from spacy_electra.pieces import TokenPieces, WordPieceEncoder
from spacy_electra.windows import make_window_batch


def main(device: str = "cuda") -> None:
    torch.manual_seed(0)
    config = ElectraConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(config.vocab_size - 5)]
    module = WindowedEncoder(ElectraEncoder(config), WordPieceEncoder(vocab)).eval()
    rng = np.random.default_rng(0)
    docs = []
    for n in (50, 300, 1000, 127):  # short docs and docs spanning many windows
        ids = rng.integers(5, config.vocab_size, size=n).astype(np.int32)
        docs.append(TokenPieces(ids, np.ones(n, dtype=np.int32)))
    batch = make_window_batch(docs, window=128, stride=96, max_batch_items=4096, cls_id=2, sep_id=3, pad_id=0)

    def run(device, dtype=None):
        m = module.to(device)
        t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        chunks = [(t(c.ids), t(c.mask), t(c.target), t(c.window_index)) for c in batch.chunks]
        args = (chunks, batch.n_pieces, sum(batch.doc_windows), t(batch.inv_counts))
        with torch.no_grad(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            start = time.perf_counter()
            vectors, cls = m(*args)
            if device == "cuda":
                torch.cuda.synchronize()
            return vectors.float().cpu(), cls.float().cpu(), time.perf_counter() - start

    ref, ref_cls, _ = run("cpu")
    for name, dtype, tol in [("fp32", None, 1e-5), ("bf16", torch.bfloat16, 2e-2), ("fp16", torch.float16, 5e-3)]:
        run(device, dtype)  # warm-up
        vec, cls, secs = run(device, dtype)
        err = (vec - ref).abs().max().item()
        rel = ((vec - ref).norm() / ref.norm()).item()
        cos = torch.nn.functional.cosine_similarity(vec[0], ref[0], dim=-1).min().item()
        ok = rel < tol  # relative to the vectors' norm: bf16 keeps ~3 significant digits
        print(f"{device} {name} vs CPU fp32: max abs diff {err:.2e}, relative norm diff {rel:.2e}, "
              f"min cosine {cos:.5f}, {secs * 1000:.1f} ms for {batch.n_pieces} pieces -> {'OK' if ok else 'FAIL'}")

    # One mixed-precision training step with a gradient scaler.
    m = module.to(device).train()
    scaler = torch.amp.GradScaler(device)
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    chunks = [(t(c.ids), t(c.mask), t(c.target), t(c.window_index)) for c in batch.chunks]
    with torch.autocast(device, dtype=torch.float16):
        vectors, cls = m(chunks, batch.n_pieces, sum(batch.doc_windows), t(batch.inv_counts))
        loss = vectors.float().pow(2).mean() + cls.float().pow(2).mean()
    scaler.scale(loss).backward()
    finite = all(torch.isfinite(p.grad).all().item() for p in m.parameters() if p.grad is not None)
    print(f"fp16 + GradScaler training step: loss {loss.item():.4f}, all gradients finite: {finite}")


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda")
