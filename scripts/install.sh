#!/usr/bin/env bash
# Install umae (+ the dev and realpkgs test extras) into the current Python without replacing an installed torch.
#
# pip replaces torch with the newest CUDA build unless torch is pinned in the same command, so
# we pin it: to the version already installed (a CUDA machine keeps its own build, since
# `torch==X` matches `X+cu130`), or to 2.13.0, whose CPU wheel this project's machines carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if TORCH=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null); then
    echo "install.sh: keeping the installed torch $TORCH"
else
    TORCH=2.13.0
    echo "install.sh: no torch found, installing torch $TORCH"
fi
"$PY" -m pip install --quiet --disable-pip-version-check "torch==$TORCH" -e ".[dev,realpkgs]"
"$PY" -c 'from umae_eval.compat import ensure_timm_importable; ensure_timm_importable(); import timm, umae_eval
print("install.sh: umae", umae_eval.__version__, "with timm", timm.__version__, "ready")'
