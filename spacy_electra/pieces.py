"""WordPiece encoding of spaCy tokens.

Each spaCy token is encoded on its own (pre-tokenized input), so the pieces of token *i* are known
by construction and no character-offset alignment is ever needed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabError(ValueError):
    """A vocabulary that lacks what ELECTRA needs."""


class TokenPieces:
    """Piece ids of a sequence of tokens, flat, with each token's piece count."""

    __slots__ = ("ids", "lengths")

    def __init__(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.ids = ids  # int32 (n_pieces,)
        self.lengths = lengths  # int32 (n_tokens,)

    def per_token(self) -> List[List[int]]:
        if not len(self.lengths):
            return []
        return [chunk.tolist() for chunk in np.split(self.ids, np.cumsum(self.lengths)[:-1])]


class WordPieceEncoder:
    """BERT/ELECTRA WordPiece with the normalisation settings of ``tokenizer_config.json``."""

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        lowercase: bool = True,
        strip_accents: Optional[bool] = None,
        tokenize_chinese_chars: bool = True,
    ) -> None:
        self.vocab = list(vocab)
        index = {piece: i for i, piece in enumerate(self.vocab)}
        missing = [t for t in SPECIAL_TOKENS if t not in index]
        if missing:
            raise VocabError(
                f"The vocabulary lacks {', '.join(missing)}; ELECTRA needs {', '.join(SPECIAL_TOKENS)}. "
                "Use the checkpoint's own vocab.txt, or train one with `spacy-electra vocab`."
            )
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (index[t] for t in SPECIAL_TOKENS)
        self._tokenizer = Tokenizer(WordPiece(index, unk_token="[UNK]", max_input_chars_per_word=100))
        self._tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
            lowercase=lowercase,
        )
        self._tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def check_fits(self, vocab_size: int, source: str = "The vocabulary") -> None:
        """Piece ids index the model's embedding matrix: a vocabulary with more pieces than the
        model's ``vocab_size`` is refused when the two meet, instead of an IndexError on the first
        text that uses a piece past the end. (Fewer pieces is fine: HF pads embedding matrices.)"""
        if self.vocab_size > vocab_size:
            raise VocabError(
                f"{source} has {self.vocab_size:,} pieces but the model's vocab_size is {vocab_size:,}; "
                "use the vocab.txt that came with the checkpoint."
            )

    # -- persistence (reading is ``checkpoint.read_vocabulary``'s job) -------------------------
    def tokenizer_config(self) -> dict:
        return {
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "tokenizer_class": "ElectraTokenizer",
            "model_max_length": 512,
            **{f"{name}_token": f"[{name.upper()}]" for name in ("pad", "unk", "cls", "sep", "mask")},
        }

    def save(self, directory: Union[str, Path]) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.txt").write_text("\n".join(self.vocab) + "\n", encoding="utf8")
        (directory / "tokenizer_config.json").write_text(json.dumps(self.tokenizer_config(), indent=2) + "\n")

    # -- encoding --------------------------------------------------------------------------------
    def encode_batch(self, docs: Sequence[Sequence[str]]) -> List[TokenPieces]:
        """Pieces for each doc given as its token texts.

        Whitespace tokens get no pieces. A non-whitespace token for which WordPiece yields nothing
        (text made only of characters the normaliser removes) gets ``[UNK]``, so every
        non-whitespace token has at least one piece and therefore a vector.
        """
        encodings = self._tokenizer.encode_batch(
            [list(doc) for doc in docs], is_pretokenized=True, add_special_tokens=False
        )
        return [self._split(doc, enc) for doc, enc in zip(docs, encodings)]

    def _split(self, tokens: Sequence[str], encoding) -> TokenPieces:
        ids = np.asarray(encoding.ids, dtype=np.int32)
        word_ids = np.asarray([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64)
        lengths = np.bincount(word_ids, minlength=len(tokens)).astype(np.int32)
        empty = np.flatnonzero(lengths == 0)
        unknown = [i for i in empty.tolist() if tokens[i].strip()]
        if unknown:
            # Insert [UNK] at each such token's place in the flat id array.
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            ids = np.insert(ids, starts[unknown], self.unk_id)
            lengths[unknown] = 1
        return TokenPieces(ids, lengths)

    def encode(self, tokens: Sequence[str]) -> TokenPieces:
        return self.encode_batch([tokens])[0]

    def encode_texts(self, texts: Sequence[str]) -> List[np.ndarray]:
        """Piece ids of raw texts (BERT pre-tokenisation), no special tokens: for pretraining
        corpora, where there are no spaCy tokens to align to."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(enc.ids, dtype=np.int32) for enc in encodings]
