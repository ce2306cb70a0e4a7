#!/usr/bin/env bash
# Install clients/node's packages (the buf CLI, @grpc/grpc-js, @grpc/proto-loader) with `npm ci`, only
# when node_modules is missing or package.json / package-lock.json changed since the last install: the
# stamp node_modules/.installed holds their checksum. Install scripts are skipped: none is needed (the
# buf binary comes from the registry as the platform package @bufbuild/buf-<os>-<arch>).
set -euo pipefail
cd "$(dirname "$0")"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "clients/node: '$tool' is not on PATH (Node.js >= 18 needed)" >&2; exit 1; }
done
stamp=node_modules/.installed
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
