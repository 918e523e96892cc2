"""``electra_transformer``: runs the encoder once per batch and shares it with listeners.

Prediction writes ``doc._.trf_data`` (spacy-transformers' ``TransformerData``). In ``update``
the outputs and one backprop callback go to every listener of the downstream components; the
last listener to backprop runs the encoder's backward pass and its optimizer step, as in
spacy-transformers, so the encoder runs once per batch whatever the number of heads.

``nlp.replace_listeners`` gives a listening component its own copy of the encoder (to freeze or
source it): the model carries the ``replace_listener`` / ``replace_listener_cfg`` hooks that
spaCy calls (``layers/listeners.py``).
"""

from typing import Callable, Dict, Iterable, List, Optional

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import minibatch
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers.listener import TransformerListener
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from transformers.utils import ModelOutput

from ..layers.electra_transformer import encoder_config
from ..layers.listeners import ElectraTransformerListener, replace_listener, replace_listener_cfg
from ..layers.loaders import lend, read_for
from ..layers.shim import electra_shim
from ..layers.torch_encoder import encoder_node, get_encoder
from .heads import refuse_rehearsal
from .saved import CheckedPipe

DEFAULT_CONFIG = encoder_config("model")


def install_extensions() -> None:
    if not Doc.has_extension("trf_data"):
        Doc.set_extension("trf_data", default=None)


@Language.factory(
    "electra_transformer",
    default_config={"model": Config().from_str(DEFAULT_CONFIG)["model"], "keep_trf_data": True},
)
def make_electra_transformer(nlp: Language, name: str, model: Model, keep_trf_data: bool) -> "ElectraTransformer":
    return ElectraTransformer(nlp.vocab, model, name, keep_trf_data=keep_trf_data)


class ElectraTransformer(CheckedPipe):
    def __init__(self, vocab, model: Model, name: str = "electra_transformer", *, keep_trf_data: bool = True) -> None:
        install_extensions()
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg = {"keep_trf_data": keep_trf_data}
        self.listener_map: Dict[str, List[TransformerListener]] = {}
        # Hooks for nlp.replace_listeners, as spacy-transformers' encoder model has them.
        self.model.attrs["replace_listener"] = replace_listener
        self.model.attrs["replace_listener_cfg"] = replace_listener_cfg

    # -- listeners ----------------------------------------------------------------------------
    @property
    def listeners(self) -> List[TransformerListener]:
        return [m for c in self.listener_map for m in self.listener_map[c]]

    @property
    def listening_components(self) -> List[str]:
        return list(self.listener_map)

    def add_listener(self, listener: TransformerListener, component_name: str) -> None:
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        if self.model.has_dim("nO") and listener.has_dim("nO") is None:
            listener.set_dim("nO", self.model.get_dim("nO"))
        self._mark_releasing_listeners()

    def remove_listener(self, listener: Model, component_name: str) -> bool:
        if listener in self.listener_map.get(component_name, []):
            self.listener_map[component_name].remove(listener)
            if not self.listener_map[component_name]:
                del self.listener_map[component_name]
            self._mark_releasing_listeners()
            return True
        return False

    def find_listeners(self, component) -> None:
        """Link the TransformerListener layers (ours or spacy-transformers') in ``component``
        whose upstream is this component or ``*``."""
        if not isinstance(getattr(component, "model", None), Model):
            return
        nodes = list(component.model.walk())
        linked = False
        for node in nodes:
            if isinstance(node, TransformerListener) and node.upstream_name in ("*", self.name):
                self.add_listener(node, component.name)
                linked = True
        if not linked:
            return
        for node in nodes:
            if node.name == "electra_scalar_mix":
                if not encoder_node(self.model).attrs["all_layers"]:
                    raise ValueError(
                        f"Component {component.name!r} uses ElectraScalarMixListener.v1, which needs "
                        f"every layer: set all_layers = true in [components.{self.name}.model.encoder]."
                    )
                if electra_shim(encoder_node(self.model)).module is not None:
                    node.set_dim("nL", self._n_layers(), force=True)

    def _n_layers(self) -> int:
        """Layer outputs the scalar-mix listeners receive: known once the encoder is loaded
        (at initialize, or from a saved pipeline), never read from a checkpoint here."""
        return get_encoder(self.model).config.num_hidden_layers + 1

    def _mark_releasing_listeners(self) -> None:
        """With keep_trf_data = false the listeners of the last listening component clear
        doc._.trf_data once they have read it."""
        keep = self.cfg["keep_trf_data"]
        last = self.listening_components[-1] if self.listener_map else None
        for component, listeners in self.listener_map.items():
            for listener in listeners:
                release = not keep and component == last
                if isinstance(listener, ElectraTransformerListener):
                    listener.attrs["release_after_read"] = release
                elif release:
                    raise ValueError(
                        f"keep_trf_data = false needs spacy_electra listeners in the last component "
                        f"that listens to {self.name!r}, but {component!r} uses spacy-transformers' "
                        "TransformerListener, which cannot clear doc._.trf_data. Use "
                        "spacy_electra.ElectraListener.v1 there, or keep_trf_data = true."
                    )

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> List[TransformerData]:
        docs = list(docs)
        if not docs:
            return []
        return self.model.predict(docs)

    def set_annotations(self, docs: Iterable[Doc], outputs: List[TransformerData]) -> None:
        for doc, output in zip(docs, outputs):
            doc._.trf_data = output

    # -- training -----------------------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Run the encoder and hand its outputs to the listeners; the weight update happens
        when the last listener backpropagates (see the module docstring)."""
        validate_examples(examples, "ElectraTransformer.update")
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        docs = [eg.predicted for eg in examples]
        if not docs:
            return losses
        set_dropout_rate(self.model, drop)
        outputs, backprop_encoder = self.model.begin_update(docs)
        pending: List[Optional[TransformerData]] = [None] * len(docs)

        def accumulate(d_outputs: List[TransformerData]) -> List[Doc]:
            for i, d_out in enumerate(d_outputs):
                for value in _arrays(d_out):
                    losses[self.name] += float((value**2).sum())
                previous = pending[i]
                pending[i] = d_out if previous is None else _add_grads(previous, d_out)
            return docs

        def backprop(d_outputs: List[TransformerData]) -> List[Doc]:
            accumulate(d_outputs)
            d_docs = backprop_encoder([g if g is not None else _no_grad(o) for g, o in zip(pending, outputs)])
            if sgd is not None:
                self.model.finish_update(sgd)
            pending[:] = [None] * len(docs)
            return d_docs

        batch_id = TransformerListener.get_batch_id(docs)
        for listener in self.listeners[:-1]:
            listener.receive(batch_id, outputs, accumulate)
        if self.listeners:
            self.listeners[-1].receive(batch_id, outputs, backprop)
        return losses

    def get_loss(self, examples, scores) -> None:
        """No loss of its own: the listeners' heads provide the gradient (see ``update``)."""
        return None

    def rehearse(self, examples, *, drop=0.0, sgd=None, losses=None):
        refuse_rehearsal(self.name)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Load the checkpoint's weights and vocabulary (the only moment it is read), then link
        the downstream listeners, which learn the encoder's layer count now."""
        checkpoint = read_for(encoder_node(self.model), f"[components.{self.name}.model.encoder]")
        with lend(checkpoint):
            self.model.initialize()
        if nlp is not None:
            for i, (_, component) in enumerate(nlp.pipeline):
                if component is self:
                    for _, downstream in nlp.pipeline[i + 1 :]:
                        self.find_listeners(downstream)
                    break

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128):
        for batch in minibatch(stream, batch_size):
            batch = list(batch)
            self.set_annotations(batch, self.predict(batch))
            yield from batch


def _arrays(data: TransformerData):
    for key, value in data.model_output.items():
        if key == "hidden_states":
            yield from value
        elif value is not None:
            yield value


def _add_grads(a: TransformerData, b: TransformerData) -> TransformerData:
    """Sum two listeners' gradients for the same doc, key by key."""
    out = dict(a.model_output)
    for key, value in b.model_output.items():
        if value is None:
            continue
        if out.get(key) is None:
            out[key] = value
        elif key == "hidden_states":
            out[key] = tuple(x + y for x, y in zip(out[key], value))
        else:
            out[key] = out[key] + value
    return TransformerData(wordpieces=a.wordpieces, model_output=ModelOutput(out), align=a.align)


def _no_grad(output: TransformerData) -> TransformerData:
    return TransformerData(wordpieces=output.wordpieces, model_output=ModelOutput(), align=output.align)
