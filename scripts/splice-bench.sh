#!/usr/bin/env bash
# Replaces the section NAME of docs/benchmarks.md (between the markers
# <!-- bench:NAME:begin --> and <!-- bench:NAME:end -->) with FILE's
# contents, appending the section if it is new.
# Usage: scripts/splice-bench.sh NAME FILE
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; file=$2; doc=docs/benchmarks.md
begin="<!-- bench:$name:begin -->"; end="<!-- bench:$name:end -->"
[ -f "$doc" ] || printf '# Benchmarks\n' > "$doc"
if grep -qF "$begin" "$doc"; then
    awk -v begin="$begin" -v end="$end" -v file="$file" '
        $0 == begin { print; while ((getline line < file) > 0) print line; skipping = 1; next }
        $0 == end { skipping = 0 }
        !skipping { print }' "$doc" > "$doc.new"
    mv "$doc.new" "$doc"
else
    { printf '\n%s\n' "$begin"; cat "$file"; printf '%s\n' "$end"; } >> "$doc"
fi
echo "updated the $name section of $doc"
