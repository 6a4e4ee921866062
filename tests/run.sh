#!/bin/sh
# run.sh BUILD_DIR:KBCHAT_BIN... -- TEST...: runs the cmocka test programs of each
# build variant, prints each program's result, and ends with the line
# "N passed, N failed" counting individual tests. Exit status 1 if anything failed.
#
# Tests run from the repository root and read the shared reference data at
# $KBCHAT_TESTDATA (default ../shared/testdata).
set -u
variants=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants="$variants $1"; shift; done
[ $# -gt 0 ] && shift

: "${KBCHAT_TESTDATA:=../shared/testdata}"
if [ ! -d "$KBCHAT_TESTDATA/models" ]; then
    echo "run.sh: reference data not found at $KBCHAT_TESTDATA (expected ../shared/testdata beside the repository)" >&2
    exit 1
fi
export KBCHAT_TESTDATA
# Sanitizer builds: leaks and undefined behaviour fail the test program.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Tests must not see the developer's own configuration.
unset KBCHAT_CONFIG XDG_CONFIG_HOME

passed=0 failed=0 broken=""
for v in $variants; do
build=${v%%:*}
export KBCHAT_BIN="${v#*:}"
for t in "$@"; do
    log="$build/tests/$t.log"
    start=$(date +%s)
    "$build/tests/$t" >"$log" 2>&1
    status=$?
    secs=$(( $(date +%s) - start ))
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed, or a sanitizer report after the last test
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -eq 0 ]; then
        printf '%-28s %4d passed  (%ds)\n' "$build/$t" "$p" "$secs"
    else
        printf '%-28s %4d passed, %d FAILED (exit %d, %ds), log: %s\n' "$build/$t" "$p" "$f" "$status" "$secs" "$log"
        broken="$broken $log"
    fi
done
done
for log in $broken; do
    echo "---- $log (last 40 lines) ----"
    tail -n 40 "$log"
done
echo "$passed passed, $failed failed"
[ -z "$broken" ]
