#!/usr/bin/env bash
# The Pareto table of BENCHMARKS.md (issue #25 item 3): teachers from the shipped recipes, students
# distilled from them with `spacy-electra distill`, spaCy's CNN `ner` / BOW `textcat`, then one
# interleaved speed run per task (benchmarks/pareto.py, one and two threads).
#
#   CHECKPOINT=../shared/models/all-MiniLM-L6-v2-electra bash benchmarks/pareto.sh training/pareto [RUN ...]
#
# RUN: data teachers baselines ner3 ner2 tc3 tc2 table (default: all, in that order). Teachers and
# baselines come from benchmarks/recipes.sh (same folder, same names). Every distillation runs
# with one thread under /usr/bin/time, so NAME.time.json holds its CPU-minutes; NER_STEPS and
# TC_STEPS size the runs; NER steps take 16 documents (about 3,400 words), textcat steps 64
# sentences; ARGS_<run> adds settings to one run (BENCHMARKS.md's table: ARGS_ner2="--training.learn_rate
# 3e-4"); the rest are configs/distill.cfg's defaults. Not a test.
set -u -o pipefail
PY=${PY:-.venv/bin/python}
OUT=${1:-training/pareto}
shift || true
RUNS=${*:-data teachers baselines ner3 ner2 tc3 tc2 table}
C=$OUT/corpus
NER_STEPS=${NER_STEPS:-480}
TC_STEPS=${TC_STEPS:-1200}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

distill() {  # name teacher layers steps train dev [extra...]
  local name=$1 teacher=$2 layers=$3 steps=$4 train=$5 dev=$6
  shift 6
  local extra="ARGS_$name"
  # shellcheck disable=SC2086  # ARGS_<run> is a list of options
  set -- "$@" ${!extra:-}
  /usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S}' -o "$OUT/$name.time.json" \
    $PY -m spacy_electra distill "$teacher" "$OUT/$name" --corpus "$train" --dev "$dev" \
    --config configs/distill.cfg --layers "$layers" --max-steps "$steps" --training.progress_bar false "$@" \
    > "$OUT/$name.distill.log" 2>&1
  echo "$name distilled: $(cat "$OUT/$name.time.json")"
}

table() {
  local bench="env PYTHONPATH=. $PY benchmarks/pareto.py"
  $bench --dev "$C/conll_dev.spacy" --max-docs 108 --baseline cnn --output "$OUT/pareto_ner.json" \
    --system "teacher=$OUT/conll_electra/model-best:fp32,int8" \
    --system "student-3L=$OUT/ner3/model-best:fp32,int8,onnx-int8" \
    --system "student-2L=$OUT/ner2/model-best:fp32,int8,onnx-int8" \
    --system "cnn=$OUT/conll_cnn/model-best" \
    --minutes "student-3L=$OUT/ner3.time.json" --minutes "student-2L=$OUT/ner2.time.json"
  $bench --dev "$C/sst2_dev.spacy" --baseline teacher/fp32 --output "$OUT/pareto_sst2.json" \
    --system "teacher=$OUT/sst2_electra/model-best:fp32,int8" \
    --system "student-3L=$OUT/tc3/model-best:fp32,int8,onnx-int8" \
    --system "student-2L=$OUT/tc2/model-best:fp32,int8,onnx-int8" \
    --system "bow=$OUT/sst2_bow/model-best" \
    --minutes "student-3L=$OUT/tc3.time.json" --minutes "student-2L=$OUT/tc2.time.json"
}

recipes() { CHECKPOINT=${CHECKPOINT:?set CHECKPOINT to an HF-format ELECTRA folder} bash benchmarks/recipes.sh "$OUT" "$@"; }

for run in $RUNS; do
  case $run in
    data) recipes data ;;
    teachers) recipes conll_electra sst2_electra ;;
    baselines) recipes conll_cnn sst2_bow ;;
    ner3) distill ner3 "$OUT/conll_electra/model-best" 3 "$NER_STEPS" "$C/conll_train.spacy" "$C/conll_dev.spacy" --training.eval_every 60 ;;
    ner2) distill ner2 "$OUT/conll_electra/model-best" 2 "$NER_STEPS" "$C/conll_train.spacy" "$C/conll_dev.spacy" --training.eval_every 60 ;;
    tc3) distill tc3 "$OUT/sst2_electra/model-best" 3 "$TC_STEPS" "$C/sst2_train.spacy" "$C/sst2_dev.spacy" --training.batch_size 64 --training.eval_every 300 ;;
    tc2) distill tc2 "$OUT/sst2_electra/model-best" 2 "$TC_STEPS" "$C/sst2_train.spacy" "$C/sst2_dev.spacy" --training.batch_size 64 --training.eval_every 300 ;;
    table) table ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
done
