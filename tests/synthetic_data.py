"""A small synthetic ``data_dir`` in the layout of ../shared/data, so the project workflow can be
tested end to end without the real datasets. Patterns are learnable (names are capitalised and
drawn from small sets, sentiment words decide the label, answers follow a template), so a tiny
model reaches non-zero dev scores in a few dozen steps."""
import json
import random
from pathlib import Path

PEOPLE = ["Alice", "Bruno", "Chen", "Dmitri", "Elena", "Farah"]
PLACES = ["Paris", "London", "Berlin", "Madrid", "Tokyo", "Lagos"]
ORGS = ["Acme", "Globex", "Initech", "Umbrella"]
GOOD = ["great", "wonderful", "moving", "brilliant"]
BAD = ["awful", "boring", "dull", "terrible"]
FILLER = ["the", "film", "was", "a", "story", "about", "people", "and", "their", "lives"]


def _sentence(rng):
    person, place, org = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(ORGS)
    words = [(person, "PROPN", "NNP", "B-PER"), ("works", "VERB", "VBZ", "O"), ("for", "ADP", "IN", "O"),
             (org, "PROPN", "NNP", "B-ORG"), ("in", "ADP", "IN", "O"), (place, "PROPN", "NNP", "B-LOC"),
             (".", "PUNCT", ".", "O")]
    return words, person, place, org


def write_data_dir(root: Path, n_train: int = 120, n_dev: int = 30, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("dev", n_dev)):
        conll, conllu, tsv, squad = ["-DOCSTART- -X- -X- O", ""], [], ["label\tsentence"], []
        for i in range(n):
            words, person, place, org = _sentence(rng)
            conll += [f"{w} {x} O {ner}" for w, _, x, ner in words] + [""]
            conllu.append(f"# sent_id = {split}-{i}")
            conllu.append("# text = " + " ".join(w for w, *_ in words))
            for j, (w, upos, xpos, _) in enumerate(words, 1):
                head = 0 if j == 2 else 2
                conllu.append(f"{j}\t{w}\t{w.lower()}\t{upos}\t{xpos}\t_\t{head}\t{'root' if head == 0 else 'dep'}\t_\t_")
            conllu.append("")
            label = rng.random() < 0.5
            review = [rng.choice(FILLER) for _ in range(4)] + [rng.choice(GOOD if label else BAD)] + [rng.choice(FILLER) for _ in range(3)]
            tsv.append(f"{int(label)}\t{' '.join(review)}")
            context = f"{person} works for {org} in {place} . The office opened last year ."
            qas = [
                {"id": f"{split}-{i}-a", "question": f"Where does {person} work ?", "is_impossible": False,
                 "answers": [{"text": place, "answer_start": context.index(place)}]},
                {"id": f"{split}-{i}-b", "question": "Who owns the moon ?", "is_impossible": True, "answers": []},
            ]
            squad.append({"title": f"t{i}", "paragraphs": [{"context": context, "qas": qas}]})
        ud_name = "train" if split == "train" else "dev"
        files = {
            f"ner/conll2003/{'train.txt' if split == 'train' else 'valid.txt'}": "\n".join(conll) + "\n",
            f"pos/ud_english_ewt/en_ewt-ud-{ud_name}.conllu": "\n".join(conllu) + "\n",
            f"textcat/sst2/{split}.tsv": "\n".join(tsv) + "\n",
            f"qa/squad2/{split}.json": json.dumps({"version": "v2.0", "data": squad}),
        }
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf8")
    raw = root / "pretrain" / "gutenberg"
    raw.mkdir(parents=True, exist_ok=True)
    docs = []
    for _ in range(300):
        sents = []
        for _ in range(rng.randint(2, 6)):
            words, *_ = _sentence(rng)
            sents.append(" ".join(w for w, *_ in words) + " " + " ".join(rng.choice(FILLER + GOOD + BAD) for _ in range(8)) + " .")
        docs.append("\n".join(sents))
    (raw / "synthetic.txt").write_text("\n\n".join(docs) + "\n", encoding="utf8")
    return root
