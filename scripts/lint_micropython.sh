#!/usr/bin/env bash
# Type-check firmware/ and protocol/ against MicroPython itself: the micropython-esp32-stubs
# and micropython-rp2-stubs packages (MicroPython 1.29), one mypy run per port.
#
#   scripts/lint_micropython.sh            check firmware/ and protocol/ (run by `make lint`)
#   scripts/lint_micropython.sh PATH...    check these instead (tests/test_stubs_lint.py)
#   scripts/lint_micropython.sh --install  install the stubs if missing (run by bootstrap.sh)
#
# The stubs replace stdlib modules (time, os, sys, struct, ...) with MicroPython's, so they
# are mypy's whole typeshed (--custom-typeshed-dir: stdlib/ from micropython-stdlib-stubs)
# plus its search path (MYPYPATH: machine, micropython, network, time, umqtt, ...). They live
# in .venv/stubs/<port>, installed with `pip install --target`, never into the venv itself,
# where they would shadow CPython's own modules for every other tool.
#
# Settings for these runs (the CPython run in pyproject.toml stays the strict one):
#   - errors are reported for firmware/ and protocol/ only, not for the stub packages (which
#     have a few of their own under mypy).
#   - `micropython` is read from a one-line overlay stub, `const(value: Any) -> Any`: firmware
#     imports only `const` from it, and the stubs' generic signature clashes with the untyped
#     CPython fallback (`def const(value): return value`) every module defines.
#   - hmac may be missing (protocol/hmac256.py carries its own HMAC for boards without it);
#     umqtt may be missing (rp2 does not freeze it; mip installs it).
#   - warn_unused_ignores is off: ignores are written against CPython's typeshed and are
#     checked there. An ignore needed only here is written `# type: ignore[code, unused-ignore]`.
#   - each board module is checked only against its own port.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

STUBS_VERSION=1.29.0.post1
STDLIB_STUBS_VERSION=1.29.0.post2
STUBS_DIR=.venv/stubs
PORTS="esp32 rp2"
PYTHON=.venv/bin/python

say() { printf 'lint_micropython: %s\n' "$*" >&2; }

stamp_wanted() { echo "$STUBS_VERSION $STDLIB_STUBS_VERSION"; }

install_stubs() {
  local port target
  for port in $PORTS; do
    target="$STUBS_DIR/$port"
    [ "$(cat "$target/.tilltap-stubs" 2>/dev/null)" = "$(stamp_wanted)" ] && continue
    say "installing micropython-$port-stubs==$STUBS_VERSION into $target"
    rm -rf "$target"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile --target "$target" \
      "micropython-$port-stubs==$STUBS_VERSION" "micropython-stdlib-stubs==$STDLIB_STUBS_VERSION"
    stamp_wanted >"$target/.tilltap-stubs"
  done
}

write_config() {  # $1: folder for the config and the overlay
  cat >"$1/mypy.ini" <<'EOF'
[mypy]
check_untyped_defs = True
warn_unused_ignores = False
warn_redundant_casts = True
ignore_errors = True

[mypy-firmware,firmware.*,protocol,protocol.*]
ignore_errors = False

[mypy-hmac,umqtt,umqtt.*]
ignore_missing_imports = True
EOF
  mkdir -p "$1/overlay"
  printf 'from typing import Any\n\ndef const(value: Any) -> Any: ...\n' >"$1/overlay/micropython.pyi"
}

check() {  # $@: the paths to check
  local port target other status=0
  for port in $PORTS; do
    if [ "$(cat "$STUBS_DIR/$port/.tilltap-stubs" 2>/dev/null)" != "$(stamp_wanted)" ]; then
      say "MicroPython stubs for $port are missing: run scripts/bootstrap.sh (or make lint)"
      exit 1
    fi
  done
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  write_config "$work"
  for port in $PORTS; do
    target="$STUBS_DIR/$port"
    case "$port" in
      esp32) other='(^|/)firmware/boards/pico_w_[^/]*\.py$' ;;
      rp2) other='(^|/)firmware/boards/esp32_[^/]*\.py$' ;;
    esac
    say "mypy against MicroPython $port stubs"
    MYPYPATH="$work/overlay:$target" .venv/bin/mypy --config-file "$work/mypy.ini" \
      --custom-typeshed-dir "$target" --cache-dir ".mypy_cache/micropython-$port" \
      --exclude "$other" --exclude '(^|/)firmware/manifest\.py$' "$@" || status=1
  done
  return "$status"
}

case "${1:-}" in
  --install) install_stubs ;;
  -*) say "usage: $0 [--install | PATH...]"; exit 2 ;;
  "") check firmware protocol ;;
  *) check "$@" ;;
esac
