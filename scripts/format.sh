#!/usr/bin/env bash
# Checks (default) or applies (--fix) .clang-format on every C++ file tracked by git, with
# Debian 12's clang-format (14). CI runs the check and fails on any difference.
#   bash scripts/format.sh          # list the files that differ, exit 1 if any
#   bash scripts/format.sh --fix    # reformat them in place
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format.sh: clang-format not found (apt-get install clang-format)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "format.sh: not formatted as .clang-format says (fix: bash scripts/format.sh --fix):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  clang-format --dry-run "${bad[0]}" 2>&1 | head -20 >&2
  exit 1
fi
echo "format.sh: ${#files[@]} files formatted as .clang-format says"
