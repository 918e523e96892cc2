#!/usr/bin/env bash
# The fine-tuning recipes of configs/ against spaCy's own efficiency pipelines, on the real data in
# ../shared/data, on this machine's CPU: each run trains with `spacy train` (one thread, so its
# CPU-minutes are its wall-clock minutes on an idle core), then `evaluate` scores every pair on
# the dev split back to back (dev scores + words/s in the same conditions for ours and spaCy's).
#
#   CHECKPOINT=../shared/models/all-MiniLM-L6-v2-electra bash benchmarks/recipes.sh training/recipes [RUN ...]
#
# RUN: data conll_electra conll_cnn sst2_electra sst2_bow ud_electra ud_cnn wnut_electra wnut_cnn ag_electra
#      ag_bow evaluate (default: all, in that order). The spaCy baselines come from
# `spacy init config -p PIPE -o efficiency` and train to convergence (their defaults: patience
# 1,600 steps, at most 20,000). The electra runs use the shipped configs unchanged except where
# the recipe table in BENCHMARKS.md says otherwise (run length for the smaller sets).
# CoNLL-2003 electra_ner (`conll_electra`) is not in the default list: `evaluate` scores
# EXISTING_NER (default OUT/conll_electra/model-best: name the run to train it there, or point
# EXISTING_NER at an earlier run such as section 10's training/ner_minilm/model-best).
# One JSON line per run goes to OUT/results.jsonl. Not a test: numbers go into BENCHMARKS.md.
set -u -o pipefail
CHECKPOINT=${CHECKPOINT:?set CHECKPOINT to an HF-format ELECTRA folder}
DATA=${DATA:-../shared/data}
PY=${PY:-.venv/bin/python}
OUT=${1:-training/recipes}
EXISTING_NER=${EXISTING_NER:-$OUT/conll_electra/model-best}
shift || true
RUNS=${*:-data conll_cnn sst2_electra sst2_bow ud_electra ud_cnn wnut_electra wnut_cnn ag_electra ag_bow evaluate}
C=$OUT/corpus
mkdir -p "$OUT" "$C"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

data() {
  local cv="$PY -m spacy_electra convert"
  $cv ner "$DATA/ner/conll2003/train.txt" "$C/conll_train.spacy"
  $cv ner "$DATA/ner/conll2003/valid.txt" "$C/conll_dev.spacy"
  $cv ner "$DATA/ner/wnut17/train.conll" "$C/wnut_train.spacy"
  $cv ner "$DATA/ner/wnut17/dev.conll" "$C/wnut_dev.spacy"
  $cv conllu "$DATA/pos/ud_english_ewt/en_ewt-ud-train.conllu" "$C/ud_train.spacy"
  $cv conllu "$DATA/pos/ud_english_ewt/en_ewt-ud-dev.conllu" "$C/ud_dev.spacy"
  $cv textcat "$DATA/textcat/sst2/train.tsv" "$C/sst2_train.spacy" --label-map 0=negative,1=positive --labels negative,positive
  $cv textcat "$DATA/textcat/sst2/dev.tsv" "$C/sst2_dev.spacy" --label-map 0=negative,1=positive --labels negative,positive
  # AG News here is 10,000 rows of the original train split and no dev: a seeded 80/20 split.
  $PY - "$DATA/textcat/agnews/train.tsv" "$C" <<'EOF'
import random, sys
rows = open(sys.argv[1], encoding="utf8").read().splitlines()
random.Random(0).shuffle(rows)
cut = int(len(rows) * 0.8)
open(f"{sys.argv[2]}/ag_train.tsv", "w", encoding="utf8").write("\n".join(rows[:cut]) + "\n")
open(f"{sys.argv[2]}/ag_dev.tsv", "w", encoding="utf8").write("\n".join(rows[cut:]) + "\n")
EOF
  for split in train dev; do
    $cv textcat "$C/ag_$split.tsv" "$C/ag_$split.spacy" --text-column 0 --label-column 1 --no-header \
      --labels World,Sports,Business,Sci/Tech
  done
}

train() {  # name config train dev [extra spacy train args...]
  local name=$1 cfg=$2 train=$3 dev=$4
  shift 4
  /usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S}' -o "$OUT/$name.time.json" \
    $PY -m spacy train "$cfg" --output "$OUT/$name" --paths.train "$train" --paths.dev "$dev" "$@" \
    > "$OUT/$name.train.log" 2>&1
  echo "$name trained: $(cat "$OUT/$name.time.json")"
}

electra() {  # name config train dev [extra...]
  local name=$1 cfg=$2 train=$3 dev=$4
  shift 4
  train "$name" "$cfg" "$train" "$dev" --paths.checkpoint "$CHECKPOINT" "$@"
}

baseline() {  # name pipe train dev
  local name=$1 pipe=$2
  $PY -m spacy init config -l en -p "$pipe" -o efficiency --force "$OUT/$name.cfg" > /dev/null
  train "$name" "$OUT/$name.cfg" "$3" "$4"
}

evaluate() {  # every pair on its dev split, ours then spaCy's, back to back
  local pairs="conll:$EXISTING_NER:$OUT/conll_cnn/model-best sst2:$OUT/sst2_electra/model-best:$OUT/sst2_bow/model-best
    ud:$OUT/ud_electra/model-best:$OUT/ud_cnn/model-best wnut:$OUT/wnut_electra/model-best:$OUT/wnut_cnn/model-best
    ag:$OUT/ag_electra/model-best:$OUT/ag_bow/model-best"
  for pair in $pairs; do
    IFS=: read -r task ours theirs <<< "$pair"
    for model in "$ours" "$theirs"; do
      [ -d "$model" ] || { echo "skip $model (not trained)"; continue; }
      local tag=$task.$(basename "$(dirname "$model")")
      $PY -m spacy evaluate "$model" "$C/${task}_dev.spacy" --output "$OUT/$tag.eval.json" > "$OUT/$tag.eval.log" 2>&1
      $PY - "$tag" "$model" "$OUT/$tag.eval.json" "$OUT/$(basename "$(dirname "$model")").time.json" >> "$OUT/results.jsonl" <<'EOF'
import json, sys
tag, model, scores, timing = sys.argv[1:]
try:
    timing = json.load(open(timing))
except OSError:
    timing = None
print(json.dumps({"run": tag, "model": model, "train_time": timing, "eval": json.load(open(scores))}))
EOF
      echo "$tag: $(tail -n 12 "$OUT/$tag.eval.log" | tr -s ' \n' ' ' | cut -c1-300)"
    done
  done
}

for run in $RUNS; do
  case $run in
    data) data ;;
    conll_electra) electra conll_electra configs/ner.cfg "$C/conll_train.spacy" "$C/conll_dev.spacy" ;;
    conll_cnn) baseline conll_cnn ner "$C/conll_train.spacy" "$C/conll_dev.spacy" ;;
    sst2_electra) electra sst2_electra configs/textcat.cfg "$C/sst2_train.spacy" "$C/sst2_dev.spacy" ;;
    sst2_bow) baseline sst2_bow textcat "$C/sst2_train.spacy" "$C/sst2_dev.spacy" ;;
    ud_electra) electra ud_electra configs/tagger.cfg "$C/ud_train.spacy" "$C/ud_dev.spacy" ;;
    ud_cnn) baseline ud_cnn tagger "$C/ud_train.spacy" "$C/ud_dev.spacy" ;;
    wnut_electra) electra wnut_electra configs/ner.cfg "$C/wnut_train.spacy" "$C/wnut_dev.spacy" --training.max_steps "${WNUT_STEPS:-200}" ;;
    wnut_cnn) baseline wnut_cnn ner "$C/wnut_train.spacy" "$C/wnut_dev.spacy" ;;
    ag_electra) electra ag_electra configs/textcat.cfg "$C/ag_train.spacy" "$C/ag_dev.spacy" --training.max_steps "${AG_STEPS:-300}" ;;
    ag_bow) baseline ag_bow textcat "$C/ag_train.spacy" "$C/ag_dev.spacy" ;;
    evaluate) evaluate ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
done
