#!/usr/bin/env bash
# The CPU study of issue 15: MAE (lambda 0) and U-MAE (lambda 0.01, 'code' form) on the full real
# CIFAR-10 train split, same seed and schedule, then the analysis on the full 10k test split.
# Results: reports/cifar10-mae-vs-umae-cpu/ (README there). Rerun any step; training resumes.
#
#   DATA=../shared/data/cifar10-jpeg.tar.gz bash scripts/cifar10_study.sh            # everything
#   STEP=train bash scripts/cifar10_study.sh   |   STEP=analyse bash scripts/cifar10_study.sh
#   STEP=lambda bash scripts/cifar10_study.sh  # the lambda sweep (paper Table 3): 1e-3 and 1e-1
#                                                # trained the same way, then compared with 0 and 1e-2
#   STEP=seeds SEEDS="1 2" bash scripts/cifar10_study.sh  # issue 21: the same MAE / U-MAE pair with
#                                                # other pre-training seeds (runs mae-s1, umae-s1, ...);
#                                                # SAVE_EVERY=1 keeps a checkpoint every epoch
#   STEP=matrix SEEDS="0 1 2" bash scripts/cifar10_study.sh  # issue 21: protocol matrix per seed pair,
#                                                # then U-MAE - MAE over seeds (scripts/study_seeds.py)
#   STEP=attentive SEEDS="0 1 2" bash scripts/cifar10_study.sh  # issue 21: the attentive probe of each
#                                                # seed pair apart from the matrix (30 + 30 epochs of the EP
#                                                # head grid on the last block's tokens: about 30 CPU-min per
#                                                # encoder), into $MATRIX/attentive-seed<s>; study_seeds.py merges
#   STEP=lambda-matrix bash scripts/cifar10_study.sh  # issue 21: the protocol matrix of the four
#                                                # seed-0 lambdas (0, 0.001, 0.01, 0.1), into $MATRIX/lambda
#   STEP=finetune bash scripts/cifar10_study.sh  # issue 21 step 3: `umae finetune --preset cpu-demo`
#                                                # (4 epochs) of the seed-0 MAE and U-MAE encoders (the
#                                                # shipped copies) and a random init, seeds FT_SEEDS
#                                                # ("0 1"), plus a partial fine-tune (last 2 of 6 blocks);
#                                                # then scripts/study_finetune.py -> $OUT/finetune
#
# Model: ViT 96 x 6 (3 heads), decoder 96 x 2, patch 4, 32 px; batch 512, blr 1.5e-3
# (lr 3e-3; the best of 1.5e-4 / 5e-4 / 1.5e-3 after 4 epochs on 10k images), 20 epochs,
# 2 warm-up, cosine; online effective rank every epoch, linear probe / kNN every 2 epochs.
# On 2 CPU cores (one thread per run, both runs at once) each run took about 87 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
RUNS=${RUNS:-runs/cifar10-study}
OUT=${OUT:-reports/cifar10-mae-vs-umae-cpu}
STEP=${STEP:-all}
UMAE=${UMAE:-python3 -m umae_eval.cli}

train() {  # LAM NAME [SEED]
    local resume=(); [ -d "$RUNS/$2" ] && resume=(--resume auto)  # also a run stopped before its first checkpoint
    OMP_NUM_THREADS=${THREADS:-1} $UMAE train --data "$DATA" --preset cifar10-vit-tiny-p4 \
        --set embed_dim=96 --set depth=6 --set num_heads=3 \
        --set decoder_embed_dim=96 --set decoder_depth=2 --set decoder_num_heads=3 \
        --batch-size 512 --micro-batch 512 --blr 1.5e-3 --epochs 20 --warmup-epochs 2 \
        --eval-every 2 --save-every "${SAVE_EVERY:-5}" --eval-images 2000 --knn-train-images 10000 \
        --seed "${3:-0}" --lam "$1" --unif-form code --out "$RUNS/$2" "${resume[@]}"
}

compare_seed() {  # SEED OUT [compare options...]: one seed's MAE / U-MAE pair; skipped when OUT is complete
    local s=$1 out=$2 enc=umae_eval/demo/encoders a b ri=()
    shift 2
    [ -f "$out/results.json" ] && return 0
    if [ "$s" = 0 ]; then  # seed 0: the shipped copies of the pair, and an untrained encoder beside them
        a=$enc/mae-cifar10-vit96x6-p4-e20.pth; b=$enc/u-mae-cifar10-vit96x6-p4-e20.pth; ri=(--random-init)
    else
        a=$RUNS/mae-s$s/last.pth; b=$RUNS/umae-s$s/last.pth
    fi
    OMP_NUM_THREADS=${THREADS:-1} $UMAE compare "$a" "$b" "${ri[@]}" --label "MAE-s$s" --label "U-MAE-s$s" \
        --data "$DATA" --data-mode memory --embed none --device cpu --out "$out" "$@"
}

if [ "$STEP" = all ] || [ "$STEP" = train ]; then
    train 0 mae & train 0.01 umae & wait
fi
if [ "$STEP" = all ] || [ "$STEP" = analyse ]; then
    $UMAE compare "$RUNS/mae/last.pth" "$RUNS/umae/last.pth" --random-init --label MAE --label U-MAE \
        --data "$DATA" --data-mode memory --embed tsne --device cpu --out "$OUT/compare"
    for m in mae umae; do
        $UMAE mask-ratio-sweep --data "$DATA" --data-mode memory --checkpoint "$RUNS/$m/last.pth" \
            --pairs 400 --views 2 --ratios 0:0.9:0.1 --bootstrap 500 --label-images 500 \
            --label-train 1000 --graph-images 300 --device cpu --out "$OUT/sweep-$m"
    done
fi
if [ "$STEP" = seeds ]; then
    # One seed at a time, both methods at once (one thread each), as the seed-0 pair was trained.
    for s in ${SEEDS:-1 2}; do
        train 0 "mae-s$s" "$s" & train 0.01 "umae-s$s" "$s" & wait
    done
fi
if [ "$STEP" = finetune ]; then
    ENC=umae_eval/demo/encoders
    finetune() {  # NAME CKPT SEED [extra options...]
        local name=$1 ckpt=$2 seed=$3; shift 3
        local resume=(); [ -d "$RUNS/$name" ] && resume=(--resume auto)
        OMP_NUM_THREADS=${THREADS:-1} $UMAE finetune "$ckpt" --data "$DATA" --preset cpu-demo --seed "$seed" \
            --log tensorboard,csv "$@" --out "$RUNS/$name" "${resume[@]}"
    }
    for s in ${FT_SEEDS:-0 1}; do
        finetune "ft-mae-s$s" "$ENC/mae-cifar10-vit96x6-p4-e20.pth" "$s" &
        finetune "ft-umae-s$s" "$ENC/u-mae-cifar10-vit96x6-p4-e20.pth" "$s" & wait
        finetune "ft-random-s$s" "$ENC/mae-cifar10-vit96x6-p4-e20.pth" "$s" --random-init
    done
    finetune ft-mae-last2 "$ENC/mae-cifar10-vit96x6-p4-e20.pth" 0 --freeze-blocks 4 &
    finetune ft-umae-last2 "$ENC/u-mae-cifar10-vit96x6-p4-e20.pth" 0 --freeze-blocks 4 & wait
    finetune ft-random-last2 "$ENC/mae-cifar10-vit96x6-p4-e20.pth" 0 --freeze-blocks 4 --random-init
    # every finished run rescored image by image; pairs on the same test images. A run committed under
    # $OUT/finetune/runs whose weights are not on this machine is compared from its earlier predictions.
    folders=("$RUNS"/ft-*)
    for rec in "$OUT"/finetune/runs/ft-*; do
        [ -e "$RUNS/$(basename "$rec")/last.pth" ] || folders+=("$rec")
    done
    python3 scripts/study_finetune.py "${folders[@]}" --reuse --data "$DATA" --out "$OUT/finetune" \
        --study-json umae_eval/demo/encoders/study.json  # the fine-tuning rows `umae demo` quotes
fi
if [ "$STEP" = matrix ]; then
    # Issue 21: the protocol matrix of each seed's MAE / U-MAE pair on the full test split (seed 0:
    # the shipped encoders, plus a random init), then U-MAE - MAE over seeds with t intervals.
    # The attentive probe runs apart (STEP=attentive): about half an hour per encoder here.
    MATRIX=${MATRIX:-$RUNS/matrix}
    for s in ${SEEDS:-0 1 2}; do
        compare_seed "$s" "$MATRIX/seed$s" --layers all --methods "${METHODS:-mean,linear,knn}" \
            --label-fraction 0.01,0.1
    done
    python3 scripts/study_seeds.py "$MATRIX"/seed? --out "$OUT/seeds"
fi
if [ "$STEP" = attentive ]; then
    MATRIX=${MATRIX:-$RUNS/matrix}
    for s in ${SEEDS:-0 1 2}; do
        compare_seed "$s" "$MATRIX/attentive-seed$s" --methods attentive --attention-images 0
    done
    python3 scripts/study_seeds.py "$MATRIX"/seed? "$MATRIX"/attentive-seed? --out "$OUT/seeds" \
        --study-json umae_eval/demo/encoders/study.json  # the seeds rows `umae demo` quotes
fi
if [ "$STEP" = lambda-matrix ]; then
    ENC=umae_eval/demo/encoders; MATRIX=${MATRIX:-$RUNS/matrix}
    OMP_NUM_THREADS=${THREADS:-1} $UMAE compare "$ENC/mae-cifar10-vit96x6-p4-e20.pth" "$RUNS/lam1e-3/last.pth" \
        "$ENC/u-mae-cifar10-vit96x6-p4-e20.pth" "$RUNS/lam1e-1/last.pth" \
        --label "λ=0 (MAE)" --label "λ=0.001" --label "λ=0.01" --label "λ=0.1" \
        --data "$DATA" --data-mode memory --layers all --methods "${METHODS:-mean,linear,knn}" \
        --label-fraction 0.01,0.1 --embed none --device cpu --out "$MATRIX/lambda"
fi
if [ "$STEP" = lambda ]; then
    train 0.001 lam1e-3 & train 0.1 lam1e-1 & wait
    $UMAE compare "$RUNS/mae/last.pth" "$RUNS/lam1e-3/last.pth" "$RUNS/umae/last.pth" "$RUNS/lam1e-1/last.pth" \
        --label "λ=0 (MAE)" --label "λ=0.001" --label "λ=0.01" --label "λ=0.1" \
        --data "$DATA" --data-mode memory --embed none --device cpu --out "$OUT/lambda-sweep"
fi
