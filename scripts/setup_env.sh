#!/usr/bin/env bash
# Create (or update) the project's virtual environment: torch/torchvision pinned to the builds
# that lie on these machines' disk, then the package with its dev extras.
#
# Why uv: most of a fresh set-up is unpacking the ~5.5 GB CUDA build of torch; pip does it on
# one core, uv in parallel. Measured on a fresh clone here (2 cores, quiet): pip 69 s (torch)
# + 84 s (the rest) = 153 s; uv 28 s for both, same versions of all 217 packages. uv is a
# 10 MB wheel pip-installed into the venv (~3 s). It does not read pip's configuration, so the
# machine's pip settings (extra indexes, find-links, constraints such as the torch cap) are
# handed to it as its environment variables (not flags: an index URL may hold a token). If uv
# cannot be installed or fails, pip does the job as before.
# KVASIR_ML_INSTALLER=pip forces pip.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH=(torch==2.14.1 torchvision==0.29.1)
UV_VERSION=0.13.9

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
# requirements.lock (scripts/lock.sh) pins every package as a constraint: a fresh clone gets the
# versions the lock names, whichever newer ones the indexes hold.
LOCK=()
[ -f requirements.lock ] && LOCK=(-c requirements.lock)

# pip's effective index settings (config files and PIP_* variables) as uv's environment
# variables, not flags: an index URL may carry a token, and a command line is public (ps).
uv_env() {
  "$PY" -m pip config list 2>/dev/null | "$PY" -c '
import shlex, sys
names = {"index-url": ("UV_INDEX_URL", " "), "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
         "find-links": ("UV_FIND_LINKS", ","), "constraint": ("UV_CONSTRAINT", " ")}
values = {}
for line in sys.stdin:
    key, _, value = line.strip().partition("=")
    name = key.rsplit(".", 1)[-1]
    if name in names and value:
        seen = values.setdefault(name, [])
        seen += [v for v in shlex.split(value)[0].split() if v not in seen]
for name, vs in values.items():
    var, sep = names[name]
    print(f"export {var}={shlex.quote(sep.join(vs))}")
'
}

if [ "${KVASIR_ML_INSTALLER:-uv}" = uv ] && "${PIP[@]}" "uv==$UV_VERSION" 2>/dev/null; then
  if (eval "$(uv_env)" && "$VENV/bin/uv" pip install -q --python "$PY" --index-strategy unsafe-best-match \
       "${LOCK[@]}" "${TORCH[@]}" -e '.[dev]'); then
    exit 0
  fi
  echo "setup: uv failed; installing with pip instead" >&2
fi
"${PIP[@]}" "${LOCK[@]}" "${TORCH[@]}"
"${PIP[@]}" "${LOCK[@]}" -e '.[dev]'
