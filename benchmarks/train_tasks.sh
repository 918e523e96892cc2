#!/usr/bin/env bash
# Fixed-budget fine-tuning of the task components on the real data (CPU), side by side:
#   electra_ner vs spaCy's ner, both listening to one electra_transformer (CoNLL-2003)
#   electra_tagger vs spaCy's tagger, both listening to one electra_transformer (UD EWT, XPOS)
#   electra_textcat with its own encoder (SST-2)
# Every run gets the same number of optimizer steps, then `spacy evaluate` on the dev split
# (scores + words/s). Needs the DocBins written by `spacy-electra convert` under corpus/.
# Usage: CHECKPOINT=path STEPS=60 bash benchmarks/train_tasks.sh OUTDIR [RUN ...]
#   RUN: electra_ner spacy_ner electra_tagger spacy_tagger electra_textcat (default: all)
set -u -o pipefail
CHECKPOINT=${CHECKPOINT:?set CHECKPOINT to an HF-format ELECTRA folder}
STEPS=${STEPS:-60}
LR=${LR:-0.001}
OUT=${1:-training/tasks}
shift || true
RUNS=${*:-electra_ner spacy_ner electra_tagger spacy_tagger electra_textcat}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
run() {  # name config train dev
  local name=$1 cfg=$2 train=$3 dev=$4 start=$(date +%s)
  $PY -m spacy train "$cfg" --output "$OUT/$name" --paths.train "$train" --paths.dev "$dev" \
    --paths.checkpoint "$CHECKPOINT" --training.max_steps "$STEPS" --training.eval_frequency 100000 \
    --training.optimizer.learn_rate.initial_rate "$LR" \
    > "$OUT/$name.train.log" 2>&1
  local trained=$(( $(date +%s) - start ))
  $PY -m spacy evaluate "$OUT/$name/model-last" "$dev" --output "$OUT/$name.eval.json" > "$OUT/$name.eval.log" 2>&1
  $PY -c 'import json, sys; name, seconds, steps, path = sys.argv[1:]
try: scores = json.load(open(path))
except OSError: scores = None
print(json.dumps({"run": name, "train_seconds": int(seconds), "steps": int(steps), "eval": scores}))' \
    "$name" "$trained" "$STEPS" "$OUT/$name.eval.json" >> "$OUT/results.jsonl"  # one line per run
  echo "$name done: $(tail -n 3 "$OUT/$name.eval.log" | tr '\n' ' ')"
}
for name in $RUNS; do
  case $name in
    electra_ner) run electra_ner configs/ner_shared.cfg corpus/conll_train.spacy corpus/conll_dev.spacy ;;
    spacy_ner) run spacy_ner configs/ner_spacy_listener.cfg corpus/conll_train.spacy corpus/conll_dev.spacy ;;
    electra_tagger) run electra_tagger configs/tagger_shared.cfg corpus/ud_train.spacy corpus/ud_dev.spacy ;;
    spacy_tagger) run spacy_tagger configs/tagger_spacy_listener.cfg corpus/ud_train.spacy corpus/ud_dev.spacy ;;
    electra_textcat) run electra_textcat configs/textcat.cfg corpus/sst2_train.spacy corpus/sst2_dev.spacy ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
done
