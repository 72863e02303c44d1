#!/usr/bin/env bash
# Open the demo's HTML report in a real headless browser (Debian's chromium,
# installed here if missing) and check it: the page's own check says both
# plots were drawn (data-plots="ok"), the console shows no error, and a
# screenshot is taken next to the report.
#
#   scripts/check_demo_report.sh [REPORT.html]     (default tmp/demo/report.html)
#
# Run by the test command after its short run of the demo; works as root
# (chromium then runs without its sandbox, which needs user namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

report=$(realpath "${1:-tmp/demo/report.html}")
[ -s "$report" ] || { echo "no report at $report: run scripts/demo.sh first" >&2; exit 1; }
install_dependencies chromium

shot=${report%.html}.png
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(--headless --disable-gpu --no-first-run --no-default-browser-check
	--user-data-dir="$out/profile" --enable-logging=stderr --v=0)
[ "$(id -u)" -ne 0 ] || flags+=(--no-sandbox)

# chromium prints the page's console messages on stderr as CONSOLE lines
timeout 120 chromium "${flags[@]}" --virtual-time-budget=3000 --dump-dom \
	"file://$report" >"$out/dom.html" 2>"$out/console.log" || true
timeout 120 chromium "${flags[@]}" --window-size=900,1400 --screenshot="$shot" \
	"file://$report" >/dev/null 2>>"$out/console.log" || true

failed=0
if ! grep -q 'data-plots="ok"' "$out/dom.html"; then
	echo "the report's plots were not drawn: body is $(grep -o 'data-plots="[a-z]*"' "$out/dom.html" || echo 'missing')"
	failed=1
fi
if grep -E 'CONSOLE' "$out/console.log" | grep -qiE 'error|uncaught'; then
	echo "the report logged console errors:"
	grep -E 'CONSOLE' "$out/console.log" | head -5
	failed=1
fi
if [ ! -s "$shot" ]; then
	echo "no screenshot was taken"
	failed=1
fi
[ "$failed" -eq 0 ] && echo "the HTML report opens in chromium with both plots and no console error; screenshot: $shot"
exit "$failed"
