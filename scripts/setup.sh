#!/usr/bin/env bash
# Installs whatever tsbuild's commands and tests need and is missing, then
# builds the TypeScript. Idempotent and quiet when everything is there; used
# by `npm test`, `npm run demo` and .ci/run (Debian bookworm, root, Node 20).
set -euo pipefail
cd "$(dirname "$0")/.."

need_node=$(node -e 'console.log(process.versions.node.split(".")[0] >= 20 ? "ok" : "old")')
if [ "$need_node" != ok ]; then echo "setup: Node 20 or newer is required (found $(node --version))" >&2; exit 1; fi

# Debian packages: busybox-static (base image fixture), skopeo + umoci (interop
# tests), attr (getfattr in tests' debugging), docker-registry (registry tests),
# apache2-utils (htpasswd -B for the registry's basic auth), openssl (test
# certificates), debootstrap (Debian base image fixture, fixtures/debian),
# iptables + iproute2 (bridge networks), bsdutils (`script`, a terminal for the -t tests).
pkgs=(busybox-static skopeo umoci docker-registry apache2-utils openssl debootstrap iptables iproute2 bsdutils)
bins=(/bin/busybox /usr/bin/skopeo /usr/bin/umoci /usr/bin/docker-registry /usr/bin/htpasswd /usr/bin/openssl /usr/sbin/debootstrap /usr/sbin/iptables /bin/ip /usr/bin/script)
missing=()
for i in "${!pkgs[@]}"; do [ -x "${bins[$i]}" ] || missing+=("${pkgs[$i]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: missing Debian packages: ${missing[*]} (install them as root with apt-get)" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages, when missing or older than the lockfile. `npm install`, not
# `npm ci`: the lockfile npm writes here lists only the optional platform
# binaries (rollup's) that the registry served, and `npm ci` refuses such a
# lock as "out of sync"; `npm install` still installs the locked versions.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm install --no-audit --no-fund --loglevel=error
fi

# Build when any source is newer than the last build.
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find cli image builder registry runtime fixtures bench scripts/bundle.mjs tsconfig.json package.json -newer "$stamp" \( -name '*.ts' -o -name '*.json' -o -name '*.mjs' \) -print -quit 2>/dev/null)" ]; then
  npx tsc -p tsconfig.json
  node scripts/bundle.mjs   # the entry points, bundled in place (why: scripts/bundle.mjs)
  chmod +x dist/cli/main.js
  touch "$stamp"
fi
