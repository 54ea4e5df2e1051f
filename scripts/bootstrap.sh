#!/usr/bin/env bash
# Make this machine ready for `make demo|test|lint|bench`: Debian packages, .venv, node_modules.
#
# Idempotent, and quick when nothing changed: it reinstalls the Python side only when
# pyproject.toml or PIP_EXTRAS changed and the Node side only when package.json or
# package-lock.json changed (a sha256 stamp in .venv and in node_modules). It starts no
# service: tests start their own private Mosquitto, and a pcscd when none is running. Run by
# every make target; safe to run by hand.
#
# Environment: PYTHON (default python3, must be >= 3.11) builds the venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian/Ubuntu packages the project needs (one list). pcscd + vsmartcard-vpcd are the PC/SC
# stack with its virtual reader (tests start pcscd themselves); pyscard (extra `pcsc`) builds
# from source and needs swig, libpcsclite-dev, a C compiler and Python's headers. chromium is
# the real browser the back office is tested in (Playwright drives /usr/bin/chromium).
SYSTEM_PACKAGES="mosquitto mosquitto-clients nodejs npm postgresql python3-venv
  pcscd vsmartcard-vpcd libpcsclite-dev swig gcc python3-dev chromium"

PYTHON="${PYTHON:-python3}"
VENV=.venv
PIP_EXTRAS="dev,postgres,pcsc,nfc"
PIP_STAMP="$VENV/.tilltap-pyproject.sha256"
NPM_STAMP=node_modules/.tilltap-package.sha256

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Present when dpkg has it installed, or when what the project needs from it is already here
# another way: NodeSource's nodejs bundles npm (Debian's npm would conflict with it), and a
# Python that can build venvs (pyenv's, say) needs no python3-venv.
package_present() {
  case "$1" in
    nodejs) command -v node >/dev/null 2>&1 && return 0 ;;
    npm) command -v npm >/dev/null 2>&1 && return 0 ;;
    python3-venv) "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 && return 0 ;;
    python3-dev) "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
      >/dev/null 2>&1 && return 0 ;;
    gcc) command -v cc >/dev/null 2>&1 && return 0 ;;
  esac
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install_system_packages() {
  local missing=() package
  for package in $SYSTEM_PACKAGES; do
    package_present "$package" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages: ${missing[*]}; install them, then run this again:"
    echo "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing system packages: ${missing[*]}; this is not a Debian/Ubuntu machine:"
    say "install their equivalents with its package manager, then run this again"
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

check_python() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "$PYTHON is missing or older than 3.11; set PYTHON=/path/to/python3.11+"
    exit 1
  fi
}

install_python_side() {
  if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    check_python
    say "creating $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local wanted
  wanted="$({ cat pyproject.toml; echo "$PIP_EXTRAS"; } | sha256sum | cut -d' ' -f1)"
  [ "$(cat "$PIP_STAMP" 2>/dev/null)" = "$wanted" ] && return 0
  say "installing tilltap[$PIP_EXTRAS] into $VENV (pyproject.toml or the extras changed)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$PIP_EXTRAS]"
  echo "$wanted" >"$PIP_STAMP"
}

node_inputs_sha256() {
  cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1
}

install_node_side() {
  [ "$(cat "$NPM_STAMP" 2>/dev/null)" = "$(node_inputs_sha256)" ] && return 0
  if [ -f package-lock.json ]; then
    say "npm ci (package.json or package-lock.json changed)"
    npm ci --no-audit --no-fund --loglevel=error
  else
    say "npm install (no package-lock.json yet: commit the one it writes)"
    npm install --no-audit --no-fund --loglevel=error
  fi
  node_inputs_sha256 >"$NPM_STAMP"
}

# MicroPython's own type stubs (esp32, rp2) for `make lint`, in .venv/stubs (stamped there).
install_micropython_stubs() {
  bash scripts/lint_micropython.sh --install
}

# micropython-lib's umqtt.simple, pinned by version and sha256, for the tests that run the
# board's MQTT client on MicroPython (tools/mpy/umqtt_package.py; quick when it is there).
install_umqtt_simple() {
  "$VENV/bin/python" -m tools.mpy.umqtt_package
}

install_system_packages
install_python_side
install_micropython_stubs
install_node_side
install_umqtt_simple
