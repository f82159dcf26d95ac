#!/usr/bin/env bash
# Set up what `make sim` and `make test` need on a fresh Debian/Ubuntu machine:
# the system ZBar library (pyzbar loads it), a virtualenv in .venv with the project installed,
# and, for the tests (`setup.sh test`), socat and Chromium for the page test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || { echo "setup: please install $* with your package manager" >&2; return 1; }
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; then
  echo "setup: installing the ZBar library (libzbar0)"
  apt_install libzbar0
fi
if [ "${1:-}" = test ]; then
  command -v socat >/dev/null || apt_install socat || true
  # the page tests drive Debian's Chromium through Playwright (never a browser Playwright downloads)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || apt_install chromium || \
    echo "setup: no chromium; the browser tests will be skipped" >&2
  # the site tests' real servers: PostgreSQL and Mosquitto (tests/servers.py starts instances of its own)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql || \
    echo "setup: no PostgreSQL server; the site database tests will be skipped" >&2
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto || \
    echo "setup: no mosquitto; the MQTT tests will be skipped" >&2
  # systemd's tools, for the unit's test (`systemd-analyze verify systemd/sorter.service`)
  command -v systemd-analyze >/dev/null || apt_install systemd || \
    echo "setup: no systemd-analyze; the unit file test will be skipped" >&2
fi

stamp="$VENV/.installed"
# a virtualenv copied from another folder (cp -r of a clone) runs that folder's code: start afresh
if [ -f "$stamp" ] && [ -s "$stamp" ] && [ "$(cat "$stamp")" != "$PWD" ]; then
  echo "setup: $VENV was made for $(cat "$stamp"), not $PWD: making a new one"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    echo "setup: installing python3-venv"
    apt_install python3-venv
    rm -rf "$VENV"; "$PYTHON" -m venv "$VENV"
  fi
fi
# the versions tested (constraints.txt); SORTER_WHEELS=/path installs from a folder of wheels
# without the internet (README: "A line PC without internet")
pip_opts=()
[ -f constraints.txt ] && pip_opts+=(--constraint constraints.txt)
[ -n "${SORTER_WHEELS:-}" ] && pip_opts+=(--no-index --find-links "$SORTER_WHEELS")
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  [ -n "${SORTER_WHEELS:-}" ] || "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${pip_opts[@]}" -e '.[test]'
  echo "$PWD" > "$stamp"
fi
