#!/usr/bin/env bash
# Render a run's HTML report to a PNG with headless Chromium (Debian: apt-get install chromium).
#   docs/screenshot.sh RUN_DIR [OUT.png]
set -euo pipefail
run_dir=${1:?usage: docs/screenshot.sh RUN_DIR [OUT.png]}
out=${2:-docs/report.png}
report="$(cd "$run_dir" && pwd)/report.html"
[ -f "$report" ] || { echo "no report at $report: run 'loopwm-rl report $run_dir' first" >&2; exit 2; }
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1240,2300 \
  --screenshot="$out" "file://$report" 2>/dev/null
rm -rf "$profile"
echo "wrote $out"
