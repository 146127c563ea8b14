#!/usr/bin/env bash
# One command from a fresh Debian 12 / Ubuntu machine to a sandboxed command: installs what is missing, builds
# airlock, checks the engine, then runs a command in the sandbox that makes one allowed and one blocked request.
# Run as root (or with sudo). Nothing leaves this machine: the "allowed" upstream is a local HTTPS server.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in podman runc git curl; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
command -v catatonit >/dev/null 2>&1 || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
  echo "quickstart: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "quickstart: installing npm dependencies and building airlock" >&2
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent

node dist/cli/bin.js doctor || echo "quickstart: airlock doctor reported problems (see above)" >&2

exec node --import tsx scripts/quickstart-demo.ts
