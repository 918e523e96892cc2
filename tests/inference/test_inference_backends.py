"""Issue #13: inference backends (bf16, int8, onnx, onnx-int8) of the windowed encoder.

Tolerances against the fp32 torch path, on tiny checkpoints with HF's initialisation (LayerNorm
at 1, normal(0, 0.02) weights, as a trained model looks):
- onnx: the same fp32 arithmetic in another order, max abs difference <= 1e-4;
- int8, onnx-int8: quantised weights and activations, cosine of every piece vector >= 0.99;
- bf16: 8-bit mantissas in the matmuls, cosine of every piece vector >= 0.99.
"""
import copy
import pickle
import sys
import threading

import numpy as np
import pytest
import spacy
import srsly
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example

import spacy_electra.pipes.ner  # noqa: F401  (registers the factories in this worktree)
import spacy_electra.pipes.transformer  # noqa: F401
from spacy_electra.inference import find_encoders, set_inference
from spacy_electra.checkpoint import load_checkpoint
from spacy_electra.inference import backends
from spacy_electra.inference.backends import INFERENCE_KINDS, apply_inference, inference_kind
from spacy_electra.checkpoint import read_vocabulary
from spacy_electra.torch_model.windowed import WindowedEncoder
from spacy_electra.windows import make_window_batch

from ..conftest import trf_config, make_hf_checkpoint, run_in_threads

WORDS = ["the", "london", "paris", "york", "city", "cafe", "new", "is", "in", "was", "a", "of", "."]
EXACT = {"onnx": 1e-4}
MIN_COSINE = {"int8": 0.99, "onnx-int8": 0.99, "bf16": 0.99}
BACKENDS = [k for k in INFERENCE_KINDS if k != "fp32"]


def available(kind):
    if kind == "bf16" and not backends.bf16_supported():
        pytest.skip("no native bf16 on this CPU")
    if kind.startswith("onnx"):
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("backends") / "ckpt"
    make_hf_checkpoint(path, "ElectraForPreTraining", random_all=False, hidden_dropout_prob=0.1,
                       attention_probs_dropout_prob=0.1)
    return path


def windowed(checkpoint) -> WindowedEncoder:
    encoder = load_checkpoint(checkpoint, kind="encoder")
    return WindowedEncoder(encoder, read_vocabulary(checkpoint, vocab_size=encoder.config.vocab_size))


def batch_inputs(module, n_docs=6, seed=0):
    rng = np.random.default_rng(seed)
    words = [[WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(1, 60))] for _ in range(n_docs)]
    wp = module.wordpiece
    batch = make_window_batch(wp.encode_batch(words), window=16, stride=12, max_batch_items=200,
                              cls_id=wp.cls_id, sep_id=wp.sep_id, pad_id=wp.pad_id)
    chunks = [tuple(torch.from_numpy(a) for a in (c.ids, c.mask, c.target, c.window_index)) for c in batch.chunks]
    return (chunks, batch.n_pieces, sum(batch.doc_windows), torch.from_numpy(batch.inv_counts))


def predict(module, inputs, all_layers=False):
    with torch.no_grad():
        return module(*inputs, all_layers=all_layers, dropout=False)


def assert_close(kind, got, want):
    if kind in EXACT:
        assert (got - want).abs().max().item() <= EXACT[kind]
    else:
        cosine = torch.nn.functional.cosine_similarity(got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1]), dim=-1)
        assert cosine.min().item() >= MIN_COSINE[kind], f"{kind}: min cosine {cosine.min().item():.4f}"
        assert not torch.equal(got, want), f"{kind} gave exactly the fp32 output: the backend did not run"


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("all_layers", [False, True])
def test_backend_outputs_match_fp32_within_tolerance(checkpoint, kind, all_layers):
    available(kind)
    module = windowed(checkpoint)
    inputs = batch_inputs(module)
    vectors, cls = predict(module, inputs, all_layers)
    assert apply_inference(module, kind) == kind
    got_vectors, got_cls = predict(module, inputs, all_layers)
    assert got_vectors.shape == vectors.shape and got_vectors.dtype == torch.float32
    assert_close(kind, got_vectors, vectors)
    assert_close(kind, got_cls, cls)
    # Other batch and window-length shapes run through the same (dynamic-axes) export.
    other = batch_inputs(module, n_docs=2, seed=5)
    apply_inference(module, "fp32")
    want = predict(module, other, all_layers)[0]
    apply_inference(module, kind)
    assert_close(kind, predict(module, other, all_layers)[0], want)


def test_unknown_kind_is_one_clear_error(checkpoint):
    module = windowed(checkpoint)
    with pytest.raises(ValueError, match=r"Unknown inference kind 'fp16'; use one of fp32, bf16, int8, onnx, onnx-int8\."):
        apply_inference(module, "fp16")
    nlp = transformer_pipeline(checkpoint)
    with pytest.raises(ValueError, match="Unknown inference kind"):
        set_inference(nlp, "int4")


def test_missing_onnxruntime_falls_back_to_fp32_with_a_warning(checkpoint, monkeypatch):
    module = windowed(checkpoint)
    inputs = batch_inputs(module)
    want = predict(module, inputs)[0]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.warns(UserWarning, match=r"inference = 'onnx-int8' is unavailable \(onnxruntime .*not installed; pip install 'spacy-electra\[onnx\]'\); the encoder runs in fp32"):
        assert apply_inference(module, "onnx-int8") == "fp32"
    assert module.inference is None
    assert torch.equal(predict(module, inputs)[0], want)


def test_cpu_without_bf16_falls_back_to_fp32_with_a_warning(checkpoint, monkeypatch):
    module = windowed(checkpoint)
    monkeypatch.setattr(backends, "bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16 support"):
        assert apply_inference(module, "bf16") == "fp32"


class SpyRunner(backends.InferenceRunner):
    """The int8 runner, counting builds and calls."""

    kind = "spy"

    def __init__(self):
        super().__init__()
        self.builds = self.calls = 0

    def build(self, encoder, all_layers):
        self.builds += 1
        return backends._quantize_torch(encoder)

    def run(self, derived, ids, mask, all_layers):
        self.calls += 1
        return backends.encode_chunk(derived, ids, mask, all_layers)


def test_grad_enabled_and_training_calls_use_the_fp32_torch_path(checkpoint):
    module = windowed(checkpoint)
    inputs = batch_inputs(module)
    with torch.no_grad():
        want = module(*inputs, dropout=False)[0]
    spy = module.inference = SpyRunner()
    got = module(*inputs, dropout=False)[0]  # grad enabled (e.g. a frozen-less begin_update)
    assert spy.calls == 0 and torch.equal(got, want) and got.requires_grad
    torch.manual_seed(0)
    with torch.no_grad():
        train_a = module(*inputs, dropout=True)[0]  # dropout asked for: training, even without grad
    torch.manual_seed(0)
    module.inference = None
    with torch.no_grad():
        train_b = module(*inputs, dropout=True)[0]
    assert spy.calls == 0 and torch.equal(train_a, train_b)
    module.inference = spy
    predict(module, inputs)
    assert spy.calls == len(inputs[0])


def test_update_trains_fp32_weights_and_inference_follows_them(checkpoint):
    """nlp.update goes through torch fp32 (the runner is never called with grad); afterwards the
    int8 copy is rebuilt from the updated weights (an optimizer that writes through numpy bumps
    no torch version counter, so staleness is detected from the weights themselves)."""
    nlp = transformer_pipeline(checkpoint, with_ner=True)
    module = next(m for _, m in find_encoders(nlp))
    spy = module.inference = SpyRunner()
    docs = [Doc(nlp.vocab, words=["the", "london", "cafe", "is", "new"])]
    nlp(docs[0].copy())
    assert (spy.builds, spy.calls) == (1, 1)
    nlp(docs[0].copy())
    assert (spy.builds, spy.calls) == (1, 2)  # same weights: the copy is reused
    before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    optimizer = nlp.resume_training()
    calls = spy.calls
    for _ in range(2):
        nlp.update(examples(nlp, docs), sgd=optimizer)
    assert spy.calls == calls
    assert any(not torch.equal(before[k], v) for k, v in module.encoder.state_dict().items())
    assert all(v.dtype == before[k].dtype for k, v in module.encoder.state_dict().items())
    doc = nlp(docs[0].copy())
    assert spy.builds == 2
    module.inference = None
    fp32 = nlp(docs[0].copy())._.trf_data.model_output.last_hidden_state
    cosine = torch.nn.functional.cosine_similarity(
        torch.from_numpy(doc._.trf_data.model_output.last_hidden_state[0]), torch.from_numpy(fp32[0]), dim=-1)
    assert cosine.min() >= 0.99


@pytest.mark.parametrize("kind", ["int8", "onnx-int8"])
def test_quantised_copy_never_replaces_the_saved_fp32_weights(checkpoint, kind, tmp_path):
    available(kind)
    nlp = transformer_pipeline(checkpoint)
    saved = model_bytes(nlp)
    module = next(m for _, m in find_encoders(nlp))
    state = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    set_inference(nlp, kind)
    nlp("the city of london is new")
    assert not any(isinstance(m, torch.nn.Module) and m is not module.encoder for m in module.children() if m is not module.wordpiece)
    after = module.encoder.state_dict()
    assert set(after) == set(state)
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], state[k]) for k in state)
    assert model_bytes(nlp) == saved
    # And a reloaded pipeline runs fp32 unless told otherwise (the config setting is separate).
    nlp.to_disk(tmp_path / "p")
    reloaded = spacy.load(tmp_path / "p")
    assert [inference_kind(m) for _, m in find_encoders(reloaded)] == ["fp32"]


def model_bytes(nlp):
    """The serialised encoder (the component's bytes less the vocabulary, which grows with every
    new word a pipeline sees)."""
    return srsly.msgpack_loads(nlp.get_pipe("electra_transformer").to_bytes())["model"]


def transformer_pipeline(checkpoint, with_ner=False):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), window=16, stride=12)})
    if with_ner:
        listener = {"@architectures": "spacy_electra.ElectraTransformerListener.v1", "upstream": "electra_transformer"}
        nlp.add_pipe("electra_ner", config={"model": {"tok2vec": listener}})
    docs = [Doc(nlp.vocab, words=["the", "london", "cafe", "is", "new"]), Doc(nlp.vocab, words=["paris", "is", "a", "city"])]
    nlp.initialize(lambda: examples(nlp, docs))
    return nlp


def examples(nlp, docs):
    out = []
    for doc in docs:
        ref = doc.copy()
        ref.ents = [Span(ref, 1, 2, label="LOC")]
        out.append(Example(doc.copy(), ref))
    return out


def hidden(docs):
    return [torch.from_numpy(d._.trf_data.model_output.last_hidden_state[0]) for d in docs]


@pytest.mark.parametrize("kind", BACKENDS)
def test_set_inference_through_a_pipeline(checkpoint, kind):
    available(kind)
    nlp = transformer_pipeline(checkpoint)
    texts = ["the london cafe is new", "paris is a city of the new york", "a"]
    want = hidden(nlp.pipe(texts))
    assert set_inference(nlp, kind) == {"electra_transformer": kind}
    for got, ref in zip(hidden(nlp.pipe(texts)), want):
        assert_close(kind, got, ref)
    set_inference(nlp, "fp32")
    assert all(torch.equal(a, b) for a, b in zip(hidden(nlp.pipe(texts)), want))


def test_set_inference_finds_an_encoder_inside_a_task_component(checkpoint):
    """electra_ner with its own ElectraTransformer.v1 tok2vec (no shared component)."""
    pytest.importorskip("onnxruntime")
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_ner", config={"model": {"tok2vec": trf_config(checkpoint, window=16, stride=12)}})
    docs = [Doc(nlp.vocab, words=["the", "london", "cafe", "is", "new"])]
    nlp.initialize(lambda: examples(nlp, docs))
    text = "the london cafe is new in paris"
    want = [(e.start, e.end, e.label_) for e in nlp(text).ents]
    assert set_inference(nlp, "onnx") == {"electra_ner": "onnx"}
    module = next(m for _, m in find_encoders(nlp))
    assert [(e.start, e.end, e.label_) for e in nlp(text).ents] == want
    assert module.inference._built, "the ONNX session was never built: the backend did not run"


def test_set_inference_without_an_encoder_says_so():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    with pytest.raises(ValueError, match=r"No initialised ELECTRA encoder in the pipeline \(sentencizer\)"):
        set_inference(nlp, "int8")


@pytest.mark.parametrize("kind", ["int8", "onnx-int8"])
def test_threads_sharing_one_backend_build_it_once_and_match_sequential(checkpoint, kind):
    available(kind)
    nlp = transformer_pipeline(checkpoint)
    module = next(m for _, m in find_encoders(nlp))
    set_inference(nlp, kind)
    runner = module.inference
    builds = []
    build = runner.build
    runner.build = lambda *a: builds.append(1) or build(*a)
    rng = np.random.default_rng(3)
    texts = [" ".join(WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(1, 40))) for _ in range(60)]
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()  # all four reach the lazy build together
        return [h.numpy().tobytes() for h in hidden(nlp.pipe(texts, batch_size=8))]

    results = run_in_threads(work, 4)
    assert len(builds) == 1
    sequential = [h.numpy().tobytes() for h in hidden(nlp.pipe(texts, batch_size=8))]
    assert all(results[i] == sequential for i in range(4))


@pytest.mark.parametrize("kind", ["int8", "onnx"])
def test_a_copied_module_keeps_its_kind_and_builds_its_own_copy(checkpoint, kind):
    available(kind)
    module = windowed(checkpoint)
    apply_inference(module, kind)
    inputs = batch_inputs(module)
    want = predict(module, inputs)[0]
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert inference_kind(clone) == kind and not clone.inference._built
        assert torch.allclose(predict(clone, inputs)[0], want, atol=1e-5)


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    from ..annotate.test_annotate import build_pipeline

    return build_pipeline(tmp_path_factory.mktemp("annotate_backends"))


def test_annotate_inference_option(saved_pipeline, tmp_path):
    """`spacy-electra annotate --inference KIND`: the run uses the backend (recorded in the
    manifest, so a rerun with another backend does not resume into the same shards), and an
    unknown kind is one line before any work; forked workers (--n-process 2) build their own."""
    import json

    from ..annotate.test_annotate import invoke

    available("onnx-int8")
    path = tmp_path / "in.txt"
    path.write_text("london is new\nparis is a city\n\nthe cafe in york\n")
    result = invoke(saved_pipeline, path, tmp_path / "bad", "--inference", "fp8")
    assert result.exit_code == 1 and "Unknown --inference 'fp8'; use one of fp32, bf16, int8, onnx, onnx-int8." in result.output
    assert not (tmp_path / "bad").exists()
    counts = {}
    for kind, n_process in (("fp32", 1), ("int8", 1), ("onnx-int8", 2)):
        out = tmp_path / kind
        result = invoke(saved_pipeline, path, out, "--inference", kind, "--n-process", n_process, "--batch-size", 1)
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["run"]["options"]["inference"] == kind
        counts[kind] = result.output.strip().splitlines()[-1].split(" (")[0]  # "Annotated N docs"
    assert counts["int8"] == counts["fp32"] == counts["onnx-int8"]
    result = invoke(saved_pipeline, path, tmp_path / "fp32", "--inference", "int8")
    assert result.exit_code == 1 and "different run" in result.output.lower()


def quantised_copy(module):
    apply_inference(module, "int8")
    predict(module, batch_inputs(module))
    (_, quantised), = module.inference._built.values()
    return quantised


def test_int8_keeps_the_first_layer_fp32_and_uses_8_bit_activations(checkpoint, tmp_path):
    """The int8 recipe where the CPU's int8 kernels take 8-bit activations (VNNI): every linear
    layer quantised per channel except the first layer's (and the embedding projection), in
    torch and in the ONNX graph alike."""
    DynamicLinear = backends._dynamic_linear_class()

    if not backends.full_range_activations():
        pytest.skip("this CPU's int8 kernels need 7-bit activations (no VNNI)")
    module = windowed(checkpoint)
    quantised = quantised_copy(module)
    first, *rest = quantised.layers
    assert rest, "the test checkpoint needs at least two layers"
    assert all(type(linear) is torch.nn.Linear for linear in (first.attention.qkv, first.attention.output, first.intermediate, first.output))
    assert type(quantised.projection) is torch.nn.Linear
    for layer in rest:
        for linear in (layer.attention.qkv, layer.attention.output, layer.intermediate, layer.output):
            assert isinstance(linear, DynamicLinear) and linear.weight().qscheme() == torch.per_channel_affine
            assert linear.reduce_range is False
    assert all(type(layer.output) is torch.nn.Linear for layer in module.encoder.layers)  # the fp32 module is untouched
    pytest.importorskip("onnx")
    path = tmp_path / "encoder.onnx"
    backends.export_onnx(module.encoder, path)
    assert backends._onnx_matmuls(path, backends.fp32_linears(module.encoder))[:3] == [
        "/projection/MatMul", "/layers.0/attention/qkv/MatMul", "/layers.0/attention/output/MatMul"]


def test_int8_on_a_cpu_without_vnni_uses_7_bit_activations_and_keeps_feed_forward_outputs_fp32(checkpoint, monkeypatch):
    monkeypatch.setattr(backends, "full_range_activations", lambda: False)
    quantised = quantised_copy(windowed(checkpoint))
    first, *rest = quantised.layers
    for layer in rest:
        assert type(layer.output) is torch.nn.Linear
        assert layer.intermediate.reduce_range is True and layer.attention.qkv.reduce_range is True


def test_8_bit_activations_halve_the_int8_error_of_7_bit_ones():
    """What the 8th bit buys (torch's own dynamic Linear hard-codes 7 bits): against fp32 on a
    GELU-like input with one outlier channel, the error of 8-bit activations is about half."""
    if not backends.full_range_activations():
        pytest.skip("this CPU's int8 kernels need 7-bit activations (no VNNI)")
    torch.manual_seed(0)
    linear = torch.nn.Linear(512, 64)
    x = torch.nn.functional.gelu(torch.randn(256, 512) * 2)
    x[:, 3] *= 20
    quantised = backends._quantize_torch(torch.nn.Sequential(linear), keep=[])[0]
    want = linear(x).detach()
    errors = {}
    for reduce_range in (True, False):
        quantised.reduce_range = reduce_range
        errors[reduce_range] = (quantised(x) - want).abs().mean().item()
    assert errors[False] < 0.7 * errors[True]


def test_onnx_int8_quantises_only_the_recipes_matmuls(checkpoint, tmp_path):
    """ORT's quantize_dynamic would also store the embedding tables (Gather) as uint8 by
    default, which cost SST-2 accuracy; the recipe quantises MatMuls only, per channel, and
    leaves fp32_linears' MatMuls (and every embedding table) fp32."""
    available("onnx-int8")
    import onnx
    from onnx import TensorProto, numpy_helper

    module = windowed(checkpoint)
    exported, quantized = tmp_path / "encoder.onnx", tmp_path / "encoder-int8.onnx"
    backends.export_onnx(module.encoder, exported)
    keep = backends.fp32_linears(module.encoder)
    backends.quantize_onnx(exported, quantized, keep)
    graph = onnx.load(str(quantized)).graph
    initializers = {t.name: t for t in graph.initializer}
    gathered = [initializers[node.input[0]] for node in graph.node if node.op_type == "Gather" and node.input[0] in initializers]
    assert gathered, "the exported graph looks up its embeddings with Gather"
    assert all(table.data_type == TensorProto.FLOAT for table in gathered)
    matmuls = {node.name for node in graph.node if node.op_type == "MatMul"}
    assert set(backends._onnx_matmuls(exported, keep)) <= matmuls
    integer = [node for node in graph.node if node.op_type == "MatMulInteger"]
    n_layers = len(module.encoder.layers)
    assert len(integer) == 4 * (n_layers - 1)  # qkv, attention output, intermediate, output of layers 1..n-1
    for node in integer:  # int8 weights with one zero point (and scale) per output channel
        weight = initializers[node.input[1]]
        assert weight.data_type == TensorProto.INT8
        assert numpy_helper.to_array(initializers[node.input[3]]).shape == (weight.dims[1],)


# --- the config setting: `inference` on the TorchEncoder.v1 node ---------------------------------


def _configured_pipeline(checkpoint, inference):
    nlp = spacy.blank("en")
    nlp.add_pipe("electra_transformer", config={"model": trf_config(str(checkpoint), window=16, stride=12, inference=inference)})
    nlp.initialize()
    return nlp


def _vectors(nlp, texts):
    return [doc._.trf_data.model_output.last_hidden_state.copy() for doc in nlp.pipe(texts)]


def test_configured_inference_runs_predictions_and_survives_save_and_load(checkpoint, tmp_path):
    texts = ["Alice moved to Paris in 2019 .", "The quick brown fox jumps over the lazy dog " * 4]
    fp32 = _vectors(_configured_pipeline(checkpoint, "fp32"), texts)
    nlp = _configured_pipeline(checkpoint, "int8")
    got = _vectors(nlp, texts)
    [(_, module)] = list(find_encoders(nlp))
    assert inference_kind(module) == "int8"
    for g, w in zip(got, fp32):
        assert not np.array_equal(g, w)  # the int8 runner really ran
        assert_close("int8", torch.from_numpy(g), torch.from_numpy(w))
    nlp.to_disk(tmp_path / "p")
    reloaded = spacy.load(tmp_path / "p")
    assert reloaded.config["components"]["electra_transformer"]["model"]["encoder"]["inference"] == "int8"
    again = _vectors(reloaded, texts)
    [(_, module)] = list(find_encoders(reloaded))
    assert inference_kind(module) == "int8"
    for a, g in zip(again, got):
        np.testing.assert_allclose(a, g, atol=1e-5)
    # the saved weights are the fp32 ones: the same pipeline reloaded as fp32 predicts fp32
    as_fp32 = spacy.load(tmp_path / "p", config={"components": {"electra_transformer": {"model": {"encoder": {"inference": "fp32"}}}}})
    for a, w in zip(_vectors(as_fp32, texts), fp32):
        np.testing.assert_allclose(a, w, atol=1e-5)


def test_configured_inference_that_cannot_run_falls_back_with_a_warning(checkpoint, monkeypatch):
    def missing():
        raise backends.BackendUnavailable("onnxruntime is not installed")

    monkeypatch.setattr(backends, "_require_onnxruntime", missing)
    nlp = _configured_pipeline(checkpoint, "onnx")
    with pytest.warns(UserWarning, match="unavailable"):
        nlp("Alice moved to Paris .")
    [(_, module)] = list(find_encoders(nlp))
    assert inference_kind(module) == "fp32"


def test_unknown_configured_inference_is_one_clear_error(checkpoint):
    with pytest.raises(ValueError, match="is not a backend; use one of fp32"):
        _configured_pipeline(checkpoint, "fp8")
