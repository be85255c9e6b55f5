#!/usr/bin/env bash
# Make sure a redis-server binary exists; install Debian's package when root.
set -euo pipefail
for candidate in redis-server /usr/bin/redis-server /usr/sbin/redis-server /usr/local/bin/redis-server; do
  if command -v "$candidate" >/dev/null 2>&1; then
    exit 0
  fi
done

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server not found; installing the redis-server package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  # The package starts a system service on port 6379; the demo and the
  # self-tests start their own servers, so that one is left as the package set it.
  exit 0
fi

cat >&2 <<'MSG'
redis-server is required for `make demo` and `make test` but was not found.
Install it, then run make again:
  Debian/Ubuntu: sudo apt-get install redis-server
  macOS:         brew install redis
MSG
exit 1
