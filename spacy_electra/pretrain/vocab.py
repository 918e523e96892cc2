"""Train a WordPiece vocabulary whose normalisation matches ``WordPieceEncoder`` exactly."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import WordPiece

from ..pieces import SPECIAL_TOKENS, WordPieceEncoder
from .corpus import expand_paths, iter_documents


def train_vocab(
    inputs: Sequence[Union[str, Path]],
    output: Union[str, Path],
    *,
    vocab_size: int = 30522,
    lowercase: bool = True,
    strip_accents: Optional[bool] = None,
    min_frequency: int = 2,
    limit_alphabet: int = 1000,
    fmt: str = "auto",
    max_documents: Optional[int] = None,
) -> WordPieceEncoder:
    """Learn ``vocab_size`` pieces from raw text (any corpus format) and write ``vocab.txt`` and
    ``tokenizer_config.json`` to ``output``. The special tokens take ids 0-4 ([PAD] is 0, the
    padding id ELECTRA configs assume)."""
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        limit_alphabet=limit_alphabet, continuing_subword_prefix="##", show_progress=False,
    )

    def texts() -> Iterator[str]:
        count = 0
        for path in expand_paths(inputs):
            for doc in iter_documents(path, fmt):
                yield "\n".join(doc)
                count += 1
                if max_documents is not None and count >= max_documents:
                    return

    tokenizer.train_from_iterator(texts(), trainer=trainer)
    pieces = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    encoder = WordPieceEncoder(
        [piece for piece, _ in pieces], lowercase=lowercase, strip_accents=strip_accents
    )
    encoder.save(output)
    return encoder
