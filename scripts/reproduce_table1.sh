#!/usr/bin/env bash
# Reproduce the CIFAR-10 / ViT-Tiny row of Table 1 ("How Mask Matters"): MAE (lambda 0) and
# U-MAE (lambda 0.01, the released code's uniformity form) with the cifar10-vit-tiny-p2 preset,
# then linear probe, mean classifier, kNN, effective rank and spectrum on the test split.
#
#   DATA=../shared/data/cifar10-jpeg.tar.gz bash scripts/reproduce_table1.sh
#
# Environment knobs (defaults = the paper's schedule):
#   DATA      dataset spec (CIFAR-10 tarball, cifar-10-batches-py folder, ...)
#   PRESET    cifar10-vit-tiny-p2 (the Table 1 recipe) or cifar10-vit-tiny-p4 (16x cheaper)
#   EPOCHS    2000 in the paper; a shorter schedule keeps warm-up at 10% of it
#   OUT       where runs and the comparison go (default runs/table1-$PRESET)
#   DEVICE    auto | cuda | cpu
#   EXTRA          extra flags for `umae train` (e.g. "--max-train-images 512 --img-size 16" for a CPU dry run)
#   COMPARE_EXTRA  extra flags for `umae compare` (e.g. "--max-train 1000 --max-test 500 --embed none")
# Both runs use `--resume auto`, so rerunning the script after an interruption continues them.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PRESET=${PRESET:-cifar10-vit-tiny-p2}
EPOCHS=${EPOCHS:-2000}
WARMUP=${WARMUP:-$(( EPOCHS / 10 > 0 ? EPOCHS / 10 : 1 ))}
OUT=${OUT:-runs/table1-$PRESET}
DEVICE=${DEVICE:-auto}
EVAL_EVERY=${EVAL_EVERY:-$(( EPOCHS / 20 > 0 ? EPOCHS / 20 : 1 ))}
SAVE_EVERY=${SAVE_EVERY:-$(( EPOCHS / 40 > 0 ? EPOCHS / 40 : 1 ))}
EXTRA=${EXTRA:-}

for spec in "mae 0.0" "umae 0.01"; do
    set -- $spec
    name=$1 lam=$2
    echo "== training $name (lambda $lam, $PRESET, $EPOCHS epochs) =="
    # shellcheck disable=SC2086
    umae train --data "$DATA" --preset "$PRESET" --lam "$lam" --unif-form code \
        --epochs "$EPOCHS" --warmup-epochs "$WARMUP" --eval-every "$EVAL_EVERY" --save-every "$SAVE_EVERY" \
        --device "$DEVICE" --out "$OUT/$name" --resume auto $EXTRA
done

echo "== comparing =="
COMPARE_EXTRA=${COMPARE_EXTRA:-}
umae compare "$OUT/mae/last.pth" "$OUT/umae/last.pth" --label MAE --label U-MAE \
    --data "$DATA" --device "$DEVICE" --out "$OUT/compare" $COMPARE_EXTRA
echo "done: $OUT/compare/report.html"
