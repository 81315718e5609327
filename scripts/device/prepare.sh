#!/usr/bin/env bash
# On a CONNECTED machine: build .device/ (git-ignored) for an offline GPU host.
#   bash scripts/device/prepare.sh            # then carry .device/ with the checkout (<= 64 MiB in all)
# .device/wheels/          the wheels the reference host lacks (scripts/device/requirements.txt),
#                          for its Python (HOST_PYTHON, default 3.12), without dependencies; every
#                          requirement of every wheel is checked against the host's packages.
# .device/kvasir-seg-512/  Kvasir-SEG with the long side at 512 px (JPEG q75) and the boxes scaled
#                          with the images (from KVASIR_SEG, default $KVASIR_SHARED_DATA/kvasir-seg or ../shared/data/kvasir-seg).
# Needs: PYTHON (default: the checkout's .venv, else python3) with pip, Pillow and packaging; PyPI reachable.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# The project's venv when the checkout has one (it holds the project's packages), else python3.
DEFAULT_PYTHON=python3
[[ -x "$REPO/.venv/bin/python" ]] && DEFAULT_PYTHON="$REPO/.venv/bin/python"
PYTHON=${PYTHON:-$DEFAULT_PYTHON}
DEST=${DEST:-$REPO/.device}
HOST_PYTHON=${HOST_PYTHON:-3.12}
KVASIR_SEG=${KVASIR_SEG:-${KVASIR_SHARED_DATA:-$REPO/../shared/data}/kvasir-seg}
LIMIT_MIB=${LIMIT_MIB:-64}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

rm -rf "$DEST"
mkdir -p "$DEST/wheels"
echo "== wheels for CPython $HOST_PYTHON (manylinux x86_64) =="
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$HOST_PYTHON" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST/wheels" -r "$HERE/requirements.txt"
ls -s --block-size=K "$DEST/wheels"
"$PYTHON" -m kvasir_ml.gpucheck.offline_host check-wheels "$DEST/wheels" "$HERE/host-packages.txt" \
    "$HERE/not-shipped.txt" --python "$HOST_PYTHON"

if [[ -f "$KVASIR_SEG/kavsir_bboxes.json" && -d "$KVASIR_SEG/images" ]]; then
    echo "== Kvasir-SEG resized to 512 px from $KVASIR_SEG =="
    "$PYTHON" -m kvasir_ml.gpucheck.offline_host resize "$KVASIR_SEG" "$DEST/kvasir-seg-512" --long-side 512 --quality 75
else
    echo "WARNING: no Kvasir-SEG at $KVASIR_SEG (set KVASIR_SEG): the check's detector step will use synthetic data" >&2
fi

echo "== what travels (tracked + untracked-not-ignored files + .device) =="
"$PYTHON" -m kvasir_ml.gpucheck.offline_host transfer-size "$REPO" "$DEST" --limit-mib "$LIMIT_MIB"
echo "ready: carry .device with the checkout, then on the host: OUT=DIR bash scripts/device/run.sh"
