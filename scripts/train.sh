#!/usr/bin/env bash
# The README's main-job command: installs what is missing (compiler, libraries, the
# Fashion-MNIST package, gnuplot), builds wengert-train and trains the default MLP.
# Extra arguments go to wengert-train (see `wengert-train --help`); relative paths in them
# (--out, --eval, --data) are relative to the directory you run this from.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
(
  cd "$root"
  bash scripts/setup.sh build train
  cmake --preset train >/dev/null
  cmake --build --preset train --target wengert-train
)
exec "$root/build/train/apps/train/wengert-train" "$@"
