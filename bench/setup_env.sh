#!/usr/bin/env bash
# Create the peer benchmark environment /work/main/.venv-bench (used by bench/overhead.py).
#   bash bench/setup_env.sh            # create (or update) the venv
#   VENV=/some/path bash bench/setup_env.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${VENV:-$ROOT/.venv-bench}"
PY="${PYTHON:-python3.11}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# torch pinned on the same line as the peers so the CPU build (2.13.0+cpu) is kept.
"$VENV/bin/python" -m pip install "torch==2.13.0" -r "$HERE/requirements-peers.txt"
# fastai pulls torchvision, which cannot import beside this torch and breaks
# lightning/torchmetrics imports; fastai.basics/learner work without it.
if "$VENV/bin/python" -m pip show -q torchvision >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall -y torchvision
fi
# deepfit itself, editable, once the project has a pyproject.toml.
if [ -f "$ROOT/pyproject.toml" ]; then
  "$VENV/bin/python" -m pip install -q -e "$ROOT" --no-deps
else
  echo "note: $ROOT/pyproject.toml not found yet; deepfit not installed (re-run later)" >&2
fi
# Smoke check: every peer must import with this torch.
KERAS_BACKEND=torch "$VENV/bin/python" - <<'PY'
import importlib, torch
print("torch", torch.__version__)
for name in ["lightning", "fastai.basics", "fastai.learner", "keras", "accelerate", "deepfit"]:
    try:
        m = importlib.import_module(name)
        top = importlib.import_module(name.split(".")[0])
        print(f"ok   {name:15s} {getattr(top, '__version__', '?')}")
    except Exception as e:  # report, do not fail: overhead.py skips missing peers
        print(f"FAIL {name:15s} {type(e).__name__}: {e}")
import keras; assert keras.backend.backend() == "torch", keras.backend.backend()
PY
