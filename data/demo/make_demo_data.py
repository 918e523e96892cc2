"""Cut the demo workflow's embedded data (this folder) from a full data folder.

    python data/demo/make_demo_data.py ../shared/data data/demo

Every slice is the first part of a public file (whole sentences, documents or articles), so the
result is reproducible and each file keeps its source's licence (README.md beside this script).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

PRETRAIN_LINES_PER_BOOK = 300  # the first lines (one sentence each) of every Gutenberg book
WIKI_ARTICLES = 250  # the first articles of wiki_00
UD_SENTENCES = {"train": 600, "dev": 200}
WNUT_SENTENCES = {"train": 1500, "dev": 400}
SQUAD = {"train": (8, 12), "dev": (3, 10)}  # (articles, paragraphs per article)
# Text classification: which book a sentence comes from. Sentences of 8-40 tokens, taken after
# the pretraining slice of each book, so none of them is in it.
BOOKS = ("austen-emma", "carroll-alice", "chesterton-thursday", "melville-moby_dick")
BOOK_SENTENCES = {"train": 150, "dev": 50}
BOOK_START_LINE = PRETRAIN_LINES_PER_BOOK


def _blocks(text: str) -> List[str]:
    """Sentences of a CoNLL file: blocks separated by blank (or whitespace-only) lines."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def main(source: Path, target: Path) -> None:
    out: Dict[str, str] = {}
    gutenberg = source / "pretrain" / "gutenberg"
    for book in sorted(gutenberg.glob("*.txt")):
        lines = book.read_text(encoding="utf8").splitlines()
        out[f"pretrain/gutenberg/{book.name}"] = "\n".join(lines[:PRETRAIN_LINES_PER_BOOK]) + "\n"
    wiki = (source / "pretrain" / "wikipedia" / "wiki_00").read_text(encoding="utf8")
    end = 0
    for _ in range(WIKI_ARTICLES):
        end = wiki.index("</doc>\n", end) + len("</doc>\n")
    out["pretrain/wikipedia/wiki_00"] = wiki[:end]

    ud = source / "pos" / "ud_english_ewt"
    for split, n in UD_SENTENCES.items():
        blocks = _blocks((ud / f"en_ewt-ud-{split}.conllu").read_text(encoding="utf8"))
        out[f"pos/ud_english_ewt_slice/{split}.conllu"] = "\n\n".join(blocks[:n]) + "\n\n"
    out["pos/ud_english_ewt_slice/LICENSE.txt"] = (ud / "LICENSE.txt").read_text(encoding="utf8")

    for split, n in WNUT_SENTENCES.items():
        blocks = _blocks((source / "ner" / "wnut17" / f"{split}.conll").read_text(encoding="utf8"))
        out[f"ner/wnut17_slice/{split}.conll"] = "\n\n".join(blocks[:n]) + "\n\n"

    for split, (n_articles, n_paragraphs) in SQUAD.items():
        data = json.loads((source / "qa" / "squad2" / f"{split}.json").read_text(encoding="utf8"))
        articles = [dict(a, paragraphs=a["paragraphs"][:n_paragraphs]) for a in data["data"][:n_articles]]
        out[f"qa/squad2_slice/{split}.json"] = json.dumps({"version": data["version"], "data": articles},
                                                          ensure_ascii=False) + "\n"

    rows: Dict[str, List[str]] = {"train": [], "dev": []}
    for book in BOOKS:
        lines = (gutenberg / f"{book}.txt").read_text(encoding="utf8").splitlines()[BOOK_START_LINE:]
        sentences = [ln.strip() for ln in lines if 8 <= len(ln.split()) <= 40 and "\t" not in ln]
        n_train, n_dev = BOOK_SENTENCES["train"], BOOK_SENTENCES["dev"]
        assert len(sentences) >= n_train + n_dev, book
        rows["train"] += [f"{book}\t{s}" for s in sentences[:n_train]]
        rows["dev"] += [f"{book}\t{s}" for s in sentences[n_train:n_train + n_dev]]
    for split, body in rows.items():
        body.sort(key=lambda row: row.split("\t", 1)[1])  # interleave the books, deterministically
        out[f"textcat/gutenberg_books/{split}.tsv"] = "label\tsentence\n" + "\n".join(body) + "\n"

    for name, text in out.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf8")
        print(f"{path}\t{len(text.encode('utf8')):,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
