#!/usr/bin/env bash
# One-shot GPU evidence run for RTD pretraining (about 7-8 minutes on one H100/H200).
#   1. (BENCH_STEP=1) tokens/s and MFU of ELECTRA-small and -base training steps in bf16 and the
#      HF loop; (FP16_SMOKE=1) a 30-step fp16 + grad-scaler run of the tiny model
#   2. pretraining VARIANTS side by side on the GPU (small models leave most of an H100 idle),
#      all with the same number of steps, sized by a timing probe to about PAR_S seconds;
#      discriminator accuracy against the prior is logged and tabulated
#   3. fine-tune SST-2 / CoNLL-2003 from each pretrained model and from random init (same
#      recipe), one process per (init, seed) side by side, seeds FT_SEEDS
#   4. results under $OUT: log.txt, bench.json, results.tar.gz and the bf16 exports of the
#      variants named in BACK, split in <= 15 MiB parts (NAME.tar.part*): at most 8 files.
# Needs gpu_carry/{vocab,wiki_128,finetune.npz} (see benchmarks/results/pretrain_gpu.md).
# Usage: OUT=/tmp/out bash benchmarks/gpu_pretrain.sh [--smoke]   (--smoke: tiny, CPU, a minute)
#   VARIANTS="name:objective:peak_lr ..."  PRETRAIN_ARGS="--training.batch_size 512"
set -x -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu_pretrain_out}
WORK=${WORK:-/tmp/gpu_pretrain_work}
PY=${PY:-python3}
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/log.txt") 2>&1
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
TOTAL_S=${TOTAL_S:-420}   # fine-tuning stops here
HARD_S=${HARD_S:-540}     # no step may run past this (the device call's own timeout is higher)
cap() { local want=$1 left=$(( HARD_S - $(date +%s) + START - ${2:-0} )); echo $(( want < left ? want : (left > 1 ? left : 1) )); }
PAR_S=${PAR_S:-180}       # wall seconds for the two pretraining runs side by side
WARMUP_FRAC=${WARMUP_FRAC:-0.2}
BENCH_STEP=${BENCH_STEP:-1}
FP16_SMOKE=${FP16_SMOKE:-1}
FT_SEEDS=${FT_SEEDS:-"0 1 2"}
BACK=${BACK:-"rtd mlm"}
PRETRAIN_ARGS=${PRETRAIN_ARGS:-}
if [ $SMOKE = 1 ]; then
  DEV="--training.device cpu --training.precision bf16 --model.size tiny --training.batch_size 8 --corpus.seq_length 128"
  BENCH="--device cpu --sizes tiny --batch 4 --length 32 --precision bf16 --hf --hf-precision fp32 --steps 1 --warmup 1"
  FT="--device cpu --sst2-limit 200 --conll-limit 100"
  FT_SEEDS=${SMOKE_SEEDS:-0}; PROBE=4; PAR_S=${SMOKE_PAR_S:-10}; TOTAL_S=${SMOKE_TOTAL_S:-200}
else
  DEV=""
  BENCH="--device cuda --sizes small base --batch 128 --length 128 --base-batch 32 --base-length 512 --precision bf16 --hf --hf-precision bf16 --steps 20 --warmup 5"
  FT="--device cuda --precision bf16 --sst2-limit 20000 --conll-epochs 2"
  PROBE=40
fi
CFG=configs/pretrain_gpu.cfg
ls -la gpu_carry; du -sh gpu_carry/*
nvidia-smi || true
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"

if [ "$BENCH_STEP" = 1 ]; then
  echo "=== 1. step benchmark ($(elapsed)s)"
  timeout $(cap 150) $PY benchmarks/bench_pretrain_step.py $BENCH --json "$OUT/bench.json"
fi

if [ "$FP16_SMOKE" = 1 ]; then
  echo "=== 1b. fp16 + grad scaler smoke run (tiny) ($(elapsed)s)"
  timeout $(cap 60) $PY -m spacy_electra.pretrain pretrain configs/pretrain_tiny.cfg --output "$WORK/fp16" \
    --corpus.vocab gpu_carry/vocab --corpus.cache gpu_carry/wiki_128 --corpus.seq_length 128 \
    --model.max_position_embeddings 512 --training.max_steps 30 --training.log_every 10 \
    --training.device $( [ $SMOKE = 1 ] && echo cpu || echo cuda ) --training.precision $( [ $SMOKE = 1 ] && echo bf16 || echo fp16 )
fi

# Variants name:objective:peak-lr, run side by side, sharing steps, warmup
# and PRETRAIN_ARGS. Those named in BACK are exported to $OUT and come back.
VARIANTS=${VARIANTS:-"rtd:rtd:0.0005 mlm:mlm:0.0005 rtd_lr2e-4:rtd:0.0002"}
variant_args() {
  local IFS=:; set -- $1
  echo "--model.objective $2 --training.learning_rate $3 $PRETRAIN_ARGS"
}

echo "=== 2a. timing probe, all variants side by side ($(elapsed)s)"
PIDS=""
for V in $VARIANTS; do
  N=${V%%:*}
  timeout $(cap 120) $PY benchmarks/gpu_pretrain.py probe $CFG "$WORK/probe_$N" --probe-steps $PROBE $DEV $(variant_args $V) \
    > "$WORK/probe_$N.txt" & PIDS="$PIDS $!"
done
wait $PIDS  # not a bare `wait`: that would also wait for the tee above, forever
cat "$WORK"/probe_*.txt
SPS=$(tail -q -n1 "$WORK"/probe_*.txt | $PY -c 'import json,sys; print(max(json.loads(l)["seconds_per_step"] for l in sys.stdin if l.strip().startswith("{")))')
[ -z "$SPS" ] && SPS=0.1
STEPS=$($PY -c "print(max(20, min(30000, int($PAR_S / $SPS))))")
WARMUP=$($PY -c "print(max(1, min(10000, int($STEPS * $WARMUP_FRAC))))")
CKPT=$(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))
LOGN=$(( STEPS / 40 > 0 ? STEPS / 40 : 1 ))
echo "seconds/step $SPS -> steps $STEPS, warmup $WARMUP"
RUN="--training.max_steps $STEPS --training.warmup_steps $WARMUP --training.checkpoint_every $CKPT --training.log_every $LOGN"

echo "=== 2b. pretraining, all variants side by side ($(elapsed)s)"
T=$(cap $(( PAR_S * 2 + 60 )) 120)
PIDS=""
for V in $VARIANTS; do
  N=${V%%:*}
  (timeout $T $PY -m spacy_electra.pretrain pretrain $CFG --output "$WORK/$N" $RUN $DEV $(variant_args $V) 2>&1 \
     | sed -u "s/^/[$N] /") & PIDS="$PIDS $!"
done
wait $PIDS
# exports come from the last checkpoints, so a run cut short still yields a model; only the
# reference pair is written to $OUT (the returned files are few and at most 16 MiB each)
PIDS=""; INITS=""
for V in $VARIANTS; do
  N=${V%%:*}; OBJ=$(variant_args $V | cut -d' ' -f2)
  WHAT=$([ $OBJ = rtd ] && echo discriminator || echo mlm)
  DEST="$WORK/parts_$N"; case " $BACK " in *" $N "*) DEST="$OUT/$N";; esac
  timeout $(cap 60) $PY benchmarks/gpu_pretrain.py export "$WORK/$N" "$DEST" --what $WHAT --keep "$WORK/${N}_export" & PIDS="$PIDS $!"
  INITS="$INITS $N=$WORK/${N}_export"
done
wait $PIDS
for V in $VARIANTS; do
  N=${V%%:*}; echo "--- $N"; $PY benchmarks/gpu_pretrain.py table "$WORK/$N" --every 2 || true
done

timeout $(cap 60) $PY benchmarks/finetune_compare.py collapse --data gpu_carry/finetune.npz $(for I in $INITS; do echo --init $I; done) \
  --init random=random:"$WORK/rtd_export" || true

LEFT=$(( TOTAL_S - $(elapsed) - 15 ))
echo "=== 3. fine-tuning, ${LEFT}s left ($(elapsed)s)"
if [ $LEFT -gt 30 ]; then
  PIDS=""
  for INIT in $INITS random=random:"$WORK/rtd_export"; do
    for SEED in $FT_SEEDS; do
      (timeout $LEFT $PY benchmarks/finetune_compare.py run --data gpu_carry/finetune.npz --init "$INIT" \
         $FT --seeds $SEED --output "$WORK/finetune.jsonl" 2>&1 | grep -v "^|" | sed -u "s/^/[ft ${INIT%%=*} $SEED] /") &
      PIDS="$PIDS $!"
    done
  done
  wait $PIDS
  $PY benchmarks/finetune_compare.py summary "$WORK/finetune.jsonl" || true
fi

echo "=== 4. package ($(elapsed)s)"
(cd "$WORK" && tar czf "$OUT/results.tar.gz" --ignore-failed-read */train_log.jsonl */config.cfg finetune.jsonl probe_*.txt)
ls -la "$OUT"
echo "done in $(elapsed)s"
