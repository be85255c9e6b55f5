#!/usr/bin/env bash
# Create the virtual environment and install soakcheck with its dependencies.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "soakcheck needs Python 3.11 or newer: install it (apt-get install python3) or set PYTHON=/path/to/python3" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "soakcheck needs Python 3.11 or newer; $python is $("$python" --version 2>&1). Set PYTHON=python3.11 or newer." >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating the virtual environment in $venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "python venv support is missing; installing python3-venv"
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv "$venv"
    else
      echo "cannot create a virtual environment: install python3-venv (sudo apt-get install python3-venv) and run make again" >&2
      exit 1
    fi
  fi
fi

echo "installing soakcheck and its dependencies into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e .
