#!/usr/bin/env bash
# On the (offline) GPU host, from the checkout: install from .device/wheels what this Python
# lacks into a temporary prefix (nothing else changes on the host), then run the GPU check.
#   OUT=DIR bash scripts/device/run.sh [--dry-run] [--budget-s S] [other scripts/gpu_check.py options]
# Results: $OUT/results.json, $OUT/<step>.log, $OUT/install.log (at most 8 files).
# Default budget: BUDGET_S=350 s of checking (+ ~20 s install): one call of ~6.3 min, so a
# rerun still fits in 15 minutes of GPU time (with 1-2 min of start-up). --dry-run: every step tiny on the CPU, and the
# check may import only the host's packages (host-packages.txt, with their dependencies) + the wheels' modules.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# The project's venv when the checkout has one (it holds the project's packages), else python3.
DEFAULT_PYTHON=python3
[[ -x "$REPO/.venv/bin/python" ]] && DEFAULT_PYTHON="$REPO/.venv/bin/python"
PYTHON=${PYTHON:-$DEFAULT_PYTHON}
DEVICE_DIR=${DEVICE_DIR:-$REPO/.device}
: "${OUT:?set OUT to the results folder}"
mkdir -p "$OUT"
DRY=0
HAS_BUDGET=0
for arg in "$@"; do
    [[ $arg == --dry-run ]] && DRY=1
    [[ $arg == --budget-s* ]] && HAS_BUDGET=1
done
PREFIX=$(mktemp -d "${TMPDIR:-/tmp}/kvasir-site.XXXXXX")
trap 'rm -rf "$PREFIX"' EXIT
LOG="$OUT/install.log"
: > "$LOG"

# Install a wheel unless this Python already has that distribution at that version.
to_install=()
if [[ -d "$DEVICE_DIR/wheels" ]]; then
    for whl in "$DEVICE_DIR"/wheels/*.whl; do
        name=$(basename "$whl" | cut -d- -f1)
        version=$(basename "$whl" | cut -d- -f2)
        have=$("$PYTHON" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print('')" "$name" 2>>"$LOG")
        if [[ "$have" == "$version" ]]; then
            echo "have $name $have" >> "$LOG"
        else
            echo "install $name $version (have: ${have:-none})" >> "$LOG"
            to_install+=("$whl")
        fi
    done
else
    echo "no $DEVICE_DIR/wheels (run scripts/device/prepare.sh on a connected machine): installing nothing" | tee -a "$LOG"
fi
if (( ${#to_install[@]} )); then
    if "$PYTHON" -m pip --version >> "$LOG" 2>&1; then
        if ! "$PYTHON" -m pip install --no-index --no-deps --disable-pip-version-check --target "$PREFIX" \
                "${to_install[@]}" >> "$LOG" 2>&1; then
            echo "pip install from $DEVICE_DIR/wheels failed; see $LOG" | tee -a "$LOG"
            tail -20 "$LOG"
            exit 2
        fi
    else  # no pip on the host: a wheel is a zip laid out for site-packages
        echo "no pip: unpacking the wheels into $PREFIX" | tee -a "$LOG"
        for whl in "${to_install[@]}"; do "$PYTHON" -m zipfile -e "$whl" "$PREFIX" >> "$LOG" 2>&1 || exit 2; done
    fi
fi
echo "installed ${#to_install[@]} wheels into $PREFIX" | tee -a "$LOG"
# The project itself, built from the checkout (its data files, e.g. packaged configs, land where
# an installed package finds them); the checkout as it is when the host cannot build it.
# Built from a copy, so the checkout gets no build/ or egg-info.
PROJECT="$REPO"
mkdir -p "$PREFIX/src"
tar -C "$REPO" --exclude=./.device --exclude=./.git --exclude=./.venv --exclude=./runs -cf - . | tar -C "$PREFIX/src" -xf -
# Used only when it finds its own data files (the taxonomy) from outside the checkout.
if "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index --disable-pip-version-check \
        --target "$PREFIX/project" "$PREFIX/src" >> "$LOG" 2>&1 \
   && (cd "$PREFIX" && PYTHONPATH="$PREFIX/project:$PREFIX" "$PYTHON" -c \
        "from kvasir_ml.taxonomy import load_taxonomy; load_taxonomy()" >> "$LOG" 2>&1); then
    PROJECT="$PREFIX/project"
    echo "installed the project into $PROJECT" | tee -a "$LOG"
else
    echo "the project does not work installed here (see $LOG): using the checkout on PYTHONPATH" | tee -a "$LOG"
fi
export PYTHONPATH="$PROJECT:$PREFIX${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg WANDB_MODE=disabled YOLO_OFFLINE=1

args=()
(( HAS_BUDGET )) || args+=(--budget-s "${BUDGET_S:-350}")
if (( DRY )) && [[ -d "$DEVICE_DIR/wheels" ]]; then  # without the wheels there is no host to simulate
    "$PYTHON" -m kvasir_ml.gpucheck.offline_host host-modules "$DEVICE_DIR/wheels" "$HERE/host-packages.txt" \
        > "$PREFIX/host-modules.txt" 2>>"$LOG"
    export KVASIR_HOST_MODULES="$PREFIX/host-modules.txt"
elif (( ! DRY )) && [[ -d "$DEVICE_DIR/kvasir-seg-512" ]]; then
    args+=(--kvasir-seg "$DEVICE_DIR/kvasir-seg-512")
fi
{ "$PYTHON" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  df -h /dev/shm 2>/dev/null | tail -1; } | tee -a "$LOG"
"$PYTHON" "$REPO/scripts/gpu_check.py" --out "$OUT" "${args[@]}" "$@"
