#!/usr/bin/env bash
# A smoke test of the network sandbox for a lane: `airlock run` with the default image, an allowlist that admits
# one path of one host, and an upstream on this machine (plain HTTP, reached through host-gateway). Inside the
# sandbox: the allowed path answers, another path and another host get airlock's 403, HTTPS to a blocked host is
# answered by the proxy with a certificate the sandbox trusts, and nothing but the proxy is reachable.
#   usage: smoke.sh REPO [ENGINE]    (exit 0 when every probe answered as expected)
set -uo pipefail
repo=$1 engine=${2:-podman}
dir=$(mktemp -d /tmp/airlock-smoke-XXXXXX)
mkdir -p "$dir/www" "$dir/ws/.airlock"
echo "hello from the upstream" >"$dir/www/ok"
port=$((20000 + RANDOM % 20000))
python3 -m http.server --bind 0.0.0.0 --directory "$dir/www" "$port" >"$dir/upstream.log" 2>&1 &
upstream=$!
trap 'kill $upstream 2>/dev/null; rm -rf "$dir"' EXIT
cat >"$dir/ws/.airlock/sandbox.yaml" <<YAML
upstream_hosts:
  allowed.test: host-gateway:$port
  blocked.test: host-gateway:$port
YAML
cat >"$dir/ws/.airlock/network-allowlist.yaml" <<'YAML'
url_prefixes:
  - {host: allowed.test, path: /ok, methods: [GET]}
YAML
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

script='
echo allowed=$(curl -sS --max-time 20 http://allowed.test/ok)
echo other_path=$(curl -s --max-time 20 -o /dev/null -w "%{http_code}" http://allowed.test/secret)
echo blocked_host=$(curl -s --max-time 20 -o /dev/null -w "%{http_code}" http://blocked.test/ok)
echo blocked_tls=$(curl -s --max-time 20 -o /dev/null -w "%{http_code}" https://blocked.test/ok)
echo direct=$(curl -s --max-time 5 -o /dev/null -w "%{http_code}" http://198.18.0.1:'"$port"'/ok || true)
'
start=${EPOCHREALTIME/./}
result=$(cd "$dir/ws" && node "$repo/dist/cli/bin.js" run --engine "$engine" -- bash -c "$script" 2>"$dir/stderr")
code=$?
elapsed=$(((${EPOCHREALTIME/./} - start) / 1000))
echo "$result" | sed 's/^/    /'
echo "    airlock exit $code after ${elapsed} ms"
expected='allowed=hello from the upstream
other_path=403
blocked_host=403
blocked_tls=403
direct=000'
if [[ $code != 0 || $result != "$expected" ]]; then
  sed 's/^/    stderr: /' "$dir/stderr" | tail -n 20
  exit 1
fi
