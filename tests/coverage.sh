#!/bin/sh
# coverage.sh BUILD_DIR: line coverage per module from the gcov counters a
# run of the test suite left in BUILD_DIR (`make coverage` builds it with
# --coverage and runs the release suite there first). Collects them with
# lcov (scripts/packages, "test"), prints one line per module (engine/,
# rag/, app/, ui/) and the total, and keeps BUILD_DIR/coverage.info for
# genhtml. GCC's gcov only: a clang build needs llvm-cov's gcov instead.
set -eu
dir=${1:?usage: tests/coverage.sh BUILD_DIR}
if ! command -v lcov >/dev/null 2>&1; then
    echo "coverage.sh: lcov is not installed; \`make test-deps\` installs it (scripts/packages)" >&2
    exit 1
fi
if [ -z "$(find "$dir" -name '*.gcda' -print -quit)" ]; then
    echo "coverage.sh: no gcov counters (*.gcda) under $dir: run the tests of a --coverage build first" >&2
    exit 1
fi
root=$(pwd)
info="$dir/coverage.info"
# Debian's lcov 1.16 prints "Subroutine ... redefined" (its own Perl, harmless):
# those lines are left out, any other message is shown, a failure stops here
if ! lcov --quiet --capture --directory "$dir" --base-directory "$root" --no-external --output-file "$info.all" \
        2>"$dir/lcov.err"; then
    cat "$dir/lcov.err" >&2
    exit 1
fi
grep -v '^Subroutine .* redefined at ' "$dir/lcov.err" >&2 || true
rm -f "$dir/lcov.err"
# only the program's own sources: not the tests, their fixtures and tools
lcov --quiet --extract "$info.all" "$root/engine/*" "$root/rag/*" "$root/app/*" "$root/ui/*" --output-file "$info"
rm -f "$info.all"

# Prints "NAME  PERCENT% (HIT of FOUND lines)" from lcov's summary of file $2.
summary() {
    lcov --summary "$2" 2>&1 | awk -v name="$1" '
        $1 == "lines......:" { gsub(/[()]/, "", $3); printf "%-8s %7s  (%s of %s lines)\n", name, $2, $3, $5 }'
}
echo "line coverage of the release suite ($dir):"
for m in engine rag app ui; do
    lcov --quiet --extract "$info" "$root/$m/*" --output-file "$dir/coverage-$m.info"
    summary "$m/" "$dir/coverage-$m.info"
    rm -f "$dir/coverage-$m.info"
done
summary "total" "$info"
echo "(per file: lcov --list $info; as HTML: genhtml -o $dir/html $info)"
