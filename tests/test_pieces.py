"""WordPiece per-token encoding against HF's ElectraTokenizerFast(is_split_into_words=True)."""
import pytest

from spacy_electra.checkpoint import CheckpointError, read_vocabulary
from spacy_electra.pieces import VocabError, WordPieceEncoder

from .conftest import BASE_PIECES, write_vocab

SENTENCES = [
    "The new cafe in Paris opened yesterday .".split(),
    ["Visit", "http://www.example.com/path?q=1", "now", "!"],
    ["Café", "Zürich", "naïve", "résumé", "ÉLAN"],
    ["中国", "日本", "and", "中文字"],
    ["I", "love", "it", "😀", "🚀🚀", "!!"],
    ["3.14", "1,000,000", "2020-01-01", "42nd", "$5"],
    ["She", "'s", "New", "York", "'s", "finest", "-", "really", "."],
    ["x" * 150, "short"],
]


def hf_tokenizer(directory, lowercase):
    from transformers import ElectraTokenizerFast

    return ElectraTokenizerFast(
        vocab_file=str(directory / "vocab.txt"), do_lower_case=lowercase, tokenize_chinese_chars=True
    )


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_pieces_match_hf_tokenizer(tmp_path, lowercase):
    write_vocab(tmp_path, lowercase=lowercase)
    ours = read_vocabulary(tmp_path)
    assert ours.lowercase is lowercase
    hf = hf_tokenizer(tmp_path, lowercase)
    for tokens, pieces in zip(SENTENCES, ours.encode_batch(SENTENCES)):
        enc = hf(tokens, is_split_into_words=True, add_special_tokens=False)
        assert pieces.ids.tolist() == enc["input_ids"], tokens
        expected = [0] * len(tokens)
        for word in enc.word_ids():
            expected[word] += 1
        # Where HF gives a token nothing, we give [UNK] (every token gets a vector); no sentence
        # here has such a token, so the counts must be equal.
        assert pieces.lengths.tolist() == expected, tokens
        assert sum(pieces.lengths) == len(pieces.ids)


def test_whitespace_tokens_get_no_pieces_and_unknown_text_gets_unk(tmp_path):
    write_vocab(tmp_path)
    enc = read_vocabulary(tmp_path)
    pieces = enc.encode(["the", "  ", "\n", "∰", "\u0007", "city"])
    per_token = pieces.per_token()
    assert per_token[1] == [] and per_token[2] == []
    assert per_token[3] == [enc.unk_id]  # unknown character
    assert per_token[4] == [enc.unk_id]  # removed by the normaliser, but not whitespace
    assert per_token[0] == [BASE_PIECES.index("the")] and per_token[5] == [BASE_PIECES.index("city")]


def test_empty_doc(tmp_path):
    write_vocab(tmp_path)
    pieces = read_vocabulary(tmp_path).encode([])
    assert pieces.ids.size == 0 and pieces.lengths.size == 0 and pieces.per_token() == []


@pytest.mark.parametrize("special", ["[CLS]", "[SEP]", "[MASK]", "[UNK]"])
def test_vocab_without_special_token_is_rejected(tmp_path, special):
    (tmp_path / "vocab.txt").write_text("\n".join(p for p in BASE_PIECES if p != special))
    with pytest.raises(CheckpointError, match=r"lacks \[" + special[1:-1]):
        read_vocabulary(tmp_path)


def test_missing_vocab_file(tmp_path):
    with pytest.raises(CheckpointError, match="no vocab.txt"):
        read_vocabulary(tmp_path)


def test_save_round_trip(tmp_path):
    write_vocab(tmp_path / "a", lowercase=False)
    enc = read_vocabulary(tmp_path / "a")
    enc.save(tmp_path / "b")
    again = read_vocabulary(tmp_path / "b")
    assert again.vocab == enc.vocab and again.lowercase is False
    assert again.encode(SENTENCES[2]).ids.tolist() == enc.encode(SENTENCES[2]).ids.tolist()


def test_encode_texts_matches_hf_on_raw_text(tmp_path):
    write_vocab(tmp_path)
    ours = read_vocabulary(tmp_path)
    hf = hf_tokenizer(tmp_path, True)
    texts = ["The new cafe in Paris, 2020!", "Zürich 中国 http://www.x.com"]
    for text, ids in zip(texts, ours.encode_texts(texts)):
        assert ids.tolist() == hf(text, add_special_tokens=False)["input_ids"]
