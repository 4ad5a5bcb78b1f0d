#!/usr/bin/env bash
# Run one named build step, print how long it took, keep its exit status.
#
#   scripts/step.sh NAME CMD [ARGS...]
#
# With STEP_TIMES_FILE set, also appends "NAME<TAB>SECONDS<TAB>STATUS" to it
# (.ci/run prints that file as a summary at the end).
set -uo pipefail

name=$1
shift
printf '\n==> %s: %s\n' "$name" "$*"
start=$(date +%s.%N)
"$@"
rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
status=$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")
printf '<== %s: %ss, %s\n' "$name" "$secs" "$status"
if [[ -n ${STEP_TIMES_FILE:-} ]]; then
    printf '%s\t%s\t%s\n' "$name" "$secs" "$status" >>"$STEP_TIMES_FILE"
fi
exit "$rc"
