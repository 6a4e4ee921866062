#!/bin/sh
# deps.sh: make sure the Debian packages kbchat builds and tests with are installed.
#
#   scripts/deps.sh check     exit 0 when pkg-config finds every library, tmux is on PATH
#                             and the locale sources are there
#   scripts/deps.sh install   install the Debian packages with apt-get (via sudo when not root),
#                             printing each command before it runs it
#   scripts/deps.sh ensure    'check', and 'install' only when the check fails
#
# The Makefile calls 'ensure' before building, so a prepared machine never touches apt.
# Set KBCHAT_DEPS_DRY_RUN=1 to print the install commands without running them.
set -eu

PKG_CONFIG=${PKG_CONFIG:-pkg-config}
LIBS="ncursesw poppler-glib sqlite3 openblas yaml-0.1 glib-2.0 libpcre2-8 cmocka"
PACKAGES="build-essential pkg-config libncurses-dev libpoppler-glib-dev libsqlite3-dev libopenblas-dev libyaml-dev libpcre2-dev libcmocka-dev tmux locales fonts-wqy-microhei qpdf"

missing_parts() {
    if ! command -v "$PKG_CONFIG" >/dev/null 2>&1; then
        echo "pkg-config"
        return
    fi
    for lib in $LIBS; do
        "$PKG_CONFIG" --exists "$lib" || echo "$lib"
    done
    command -v tmux >/dev/null 2>&1 || echo "tmux"
    # locale sources, for tests that build a de_DE (decimal comma) locale
    [ -f /usr/share/i18n/locales/de_DE ] || echo "locales"
    # knowledge-base test fixtures: a CJK font to draw Chinese PDFs, qpdf to encrypt one
    [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || echo "fonts-wqy-microhei"
    command -v qpdf >/dev/null 2>&1 || echo "qpdf"
}

run() {
    echo "deps: running: $*"
    if [ "${KBCHAT_DEPS_DRY_RUN:-0}" = 1 ]; then
        return 0
    fi
    "$@"
}

install_packages() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "deps: apt-get not found: install these packages with your system's package manager: $PACKAGES" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "deps: not root and sudo is not installed: as root run: apt-get install $PACKAGES" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    run $sudo apt-get update
    run $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES
}

case "${1:-}" in
check)
    [ -z "$(missing_parts)" ]
    ;;
install)
    install_packages
    ;;
ensure)
    missing=$(missing_parts | tr '\n' ' ')
    if [ -n "$missing" ]; then
        echo "deps: not found: $missing"
        install_packages
        if [ "${KBCHAT_DEPS_DRY_RUN:-0}" != 1 ] && [ -n "$(missing_parts)" ]; then
            echo "deps: still missing after install: $(missing_parts | tr '\n' ' ')" >&2
            exit 1
        fi
    fi
    ;;
*)
    echo "usage: scripts/deps.sh check|install|ensure" >&2
    exit 2
    ;;
esac
