#!/usr/bin/env bash
# Idempotent setup for `make demo` / `make test`: Debian packages, kernel
# headers for bcc, tracefs, and the .venv. A second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# --test: also what only the tests use (Debian's Prometheus server, for the exporter's test).
for_tests=0
[[ ${1:-} == --test ]] && for_tests=1
VENV=.venv
say() { printf 'setup: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
if [[ $(id -u) -eq 0 ]] && command -v dpkg-query >/dev/null; then
    arch=$(dpkg --print-architecture)
    wanted=(python3-bpfcc bpftool python3-venv tmux libcap2-bin)
    ((for_tests)) && wanted+=(prometheus)
    # Headers for bcc: any distro linux-headers tree will do (gmemtrace merges
    # its arch and -common folders itself); install the default flavour if none.
    compgen -G "/usr/src/linux-headers-*-$arch" >/dev/null || wanted+=("linux-headers-$arch")
    missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        log=$(mktemp)
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
            cat "$log" >&2
            echo "setup: apt-get failed installing ${missing[*]}" >&2
            exit 1
        fi
        rm -f "$log"
    fi
else
    say "not root: skipping Debian packages (gmemtrace doctor says what is missing)"
fi

# --- tracefs (bcc reads tracepoint formats from it) -------------------------
if ! grep -qs ' tracefs ' /proc/mounts; then
    if mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; then
        say "mounted tracefs at /sys/kernel/tracing"
    else
        say "tracefs is not mounted and could not be mounted here"
    fi
fi

# --- the virtualenv ----------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "setup: $PYTHON is older than 3.11" >&2; exit 1; }
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -e $stamp ]]; then
    say "installing gmemtrace and its Python dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,notebook]'
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

# bcc from Debian's python3-bpfcc: linked into the venv, not copied.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [[ -d /usr/lib/python3/dist-packages/bcc && ! -e $site/bcc ]]; then
    ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc"
    say "linked Debian's bcc into $VENV"
fi
