#!/usr/bin/env bash
# make interop: start the server (embedded Redis, port 0, a throwaway data directory), run the Node.js
# client against it, and always stop the server. Exits with the client's status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON_BIN:-$root/.venv/bin/python}

"$here/install.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/allocator-interop.XXXXXX")
server=""
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server" 2>/dev/null; then
      echo "interop: server $server ignored SIGTERM for 30 s; killing it" >&2
      kill -KILL "$server" 2>/dev/null || true
    fi
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() { echo "---- server log ($tmp/server.log, last 40 lines) ----" >&2; tail -n 40 "$tmp/server.log" >&2 || true; }

# The server gets an embedded Redis whatever ALLOCATOR_* the caller has set.
(
  cd "$root"
  unset $(compgen -e | grep '^ALLOCATOR_') 2>/dev/null || true
  exec "$python" -m allocator.server --listen 127.0.0.1:0 --port-file "$tmp/port" \
    --data-dir "$tmp/data" --log-format text
) 2>"$tmp/server.log" >/dev/null &
server=$!

for _ in $(seq 600); do
  [[ -s $tmp/port ]] && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "interop: the server exited before it was ready" >&2; show_log; exit 1
  fi
  sleep 0.1
done
[[ -s $tmp/port ]] || { echo "interop: the server was not ready within 60 s" >&2; show_log; exit 1; }
target="127.0.0.1:$(cat "$tmp/port")"
echo "interop: server pid $server on $target"

status=0
ALLOCATOR_TARGET=$target node "$here/interop.js" || status=$?
if [[ $status -ne 0 ]]; then show_log; fi
exit $status
