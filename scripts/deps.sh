#!/bin/sh
# deps.sh: make sure the Debian packages kbchat needs are installed. The
# packages and how to tell each is there are listed in scripts/packages.
#
#   scripts/deps.sh check   [build|test]  exit 0 when everything of that level is there
#   scripts/deps.sh install [build|test]  install that level's packages with apt-get (via
#                                         sudo when not root), printing each command first
#   scripts/deps.sh ensure  [build|test]  'check', and 'install' only when the check fails
#   scripts/deps.sh packages [build|test] the Debian packages of that level, one line
#   scripts/deps.sh libs    [build|test]  the pkg-config names of that level only, one line
#
# The level is "build" (what `make` needs; the default) or "test" (build and
# test, what `make test` needs). The Makefile calls 'ensure', so a machine that
# has the packages never touches apt. KBCHAT_DEPS_DRY_RUN=1 prints the install
# commands without running them.
set -eu

PKG_CONFIG=${PKG_CONFIG:-pkg-config}
LIST=${KBCHAT_PACKAGES:-$(dirname "$0")/packages}

# Prints the "package check" lines of level $1 ("test" includes "build").
# With $2 = only, prints the lines of exactly that level.
entries() {
    awk -v level="$1" -v only="${2:-}" '
        /^[ \t]*(#|$)/ { next }
        $1 == level || (only == "" && level == "test" && $1 == "build") { print $2, $3 }' "$LIST"
}

# Prints what of level $1 is missing, a package name per line.
missing_parts() {
    entries "$1" | while read -r package probe; do
        case $probe in
        pc:*)   command -v "$PKG_CONFIG" >/dev/null 2>&1 && "$PKG_CONFIG" --exists "${probe#pc:}" ;;
        cmd:*)  command -v "${probe#cmd:}" >/dev/null 2>&1 ;;
        file:*) [ -e "${probe#file:}" ] ;;
        *)      echo "deps: $LIST: unknown check '$probe' for $package" >&2; false ;;
        esac || echo "$package"
    done
}

run() {
    echo "deps: running: $*"
    if [ "${KBCHAT_DEPS_DRY_RUN:-0}" = 1 ]; then
        return 0
    fi
    "$@"
}

# Installs the packages of level $1.
install_packages() {
    packages=$(entries "$1" | awk '{ printf "%s%s", sep, $1; sep = " " }')
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "deps: apt-get not found: install these packages with your system's package manager: $packages" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "deps: not root and sudo is not installed: as root run: apt-get install $packages" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    run $sudo apt-get update
    run $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages
}

action=${1:-}
level=${2:-build}
case $level in
build|test) ;;
*) echo "usage: scripts/deps.sh check|install|ensure|packages|libs [build|test]" >&2; exit 2 ;;
esac
if [ ! -r "$LIST" ]; then
    echo "deps: cannot read the package list $LIST" >&2
    exit 1
fi

case $action in
check)
    [ -z "$(missing_parts "$level")" ]
    ;;
install)
    install_packages "$level"
    ;;
ensure)
    missing=$(missing_parts "$level" | tr '\n' ' ')
    if [ -n "$missing" ]; then
        echo "deps: not found: $missing"
        install_packages "$level"
        if [ "${KBCHAT_DEPS_DRY_RUN:-0}" != 1 ] && [ -n "$(missing_parts "$level")" ]; then
            echo "deps: still missing after install: $(missing_parts "$level" | tr '\n' ' ')" >&2
            exit 1
        fi
    fi
    ;;
packages)
    entries "$level" | awk '{ printf "%s%s", sep, $1; sep = " " } END { print "" }'
    ;;
libs)
    entries "$level" only | awk '$2 ~ /^pc:/ { printf "%s%s", sep, substr($2, 4); sep = " " } END { print "" }'
    ;;
*)
    echo "usage: scripts/deps.sh check|install|ensure|packages|libs [build|test]" >&2
    exit 2
    ;;
esac
