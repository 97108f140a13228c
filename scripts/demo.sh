#!/usr/bin/env bash
# `npm run demo`: the main job end to end on the built-in default, the Django
# CI pipeline (issue 7):
#   Debian base from the machine's own mirror (first time only, cached)
#   -> tsbuild build -t django-demo fixtures/django
#   -> tsbuild run -d -p PORT:8000 -> /healthz, then / over HTTP
#   -> a local docker-registry on 127.0.0.1 -> tsbuild push
#   -> tsbuild pull into a fresh root -> run it again -> / over HTTP
#   -> everything cleaned up (containers, registry, temp dirs).
# Every step prints its duration; the first failure stops the demo with its
# reason. TSBUILD_DEMO_KEEP=1 keeps the work dir for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
TSBUILD="$repo/bin/tsbuild"
work=$(mktemp -d /tmp/tsbuild-demo-XXXXXX)
root="$work/root"
root2="$work/root2"
keep=${TSBUILD_DEMO_KEEP:-}
registry_pid=
t_all=$(date +%s%N)

ts() { "$TSBUILD" --root "$root" "$@"; }
ts2() { "$TSBUILD" --root "$root2" "$@"; }

cleanup() {
  local rc=$?
  set +e
  ts rm -f django-demo >/dev/null 2>&1
  ts2 rm -f django-demo2 >/dev/null 2>&1
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null; fi
  if [ -z "$keep" ]; then rm -rf "$work"; else echo "demo: kept $work"; fi
  exit $rc
}
trap cleanup EXIT

# step NAME COMMAND...: runs it in a subshell with errexit on, so a failing
# command inside a function fails the step (a plain `if ! f` would turn
# errexit off inside f).
step() {
  local name=$1; shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local t0; t0=$(date +%s%N)
  local rc=0
  ( set -e; "$@" ) || rc=$?
  if [ $rc -ne 0 ]; then
    printf '\033[31mdemo: step "%s" failed (exit %d); see the output above\033[0m\n' "$name" "$rc" >&2
    exit 1
  fi
  printf '    (%s: %d ms)\n' "$name" $(( ($(date +%s%N) - t0) / 1000000 ))
}

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# http_get URL [TRIES]: prints the status and the body; retries while the server starts.
http_get() {
  node -e '
    const [url, tries] = [process.argv[1], Number(process.argv[2] || 1)];
    (async () => {
      for (let i = 0; i < tries; i++) {
        try {
          const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
          const body = await r.text();
          console.log(`HTTP ${r.status} ${url} (${body.length} bytes)`);
          if (r.status === 200) { console.log(body.trim().split("\n").slice(0, 12).join("\n")); process.exit(0); }
        } catch (e) { if (i === tries - 1) console.log(`${url}: ${e.cause?.code ?? e.message}`); }
        await new Promise((r) => setTimeout(r, 500));
      }
      process.exit(1);
    })();' "$1" "${2:-1}"
}

base_image() { node dist/fixtures/debian/make-base.js --root "$root"; }
build() { ts build -t django-demo --progress plain fixtures/django; }
inspect_image() {
  ts inspect --format 'user={{.Config.User}} exposed={{json .Config.ExposedPorts}} cmd={{json .Config.Cmd}}' django-demo
  ts inspect --format 'healthcheck={{json .Config.Healthcheck.Test}}' django-demo
  ts images django-demo
}
run_tests() { ts run --rm -e DJANGO_SECRET_KEY=demo django-demo python3 manage.py test; }
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
port=$(free_port)
port2=$(free_port)
run_app() { ts run -d -p "$port:8000" --name django-demo -e DJANGO_SECRET_KEY="$secret" django-demo; }
healthz() { http_get "http://127.0.0.1:$port/healthz" 120; }
index() { http_get "http://127.0.0.1:$port/"; }
reg_port=$(free_port)
start_registry() {
  mkdir -p "$work/registry"
  cat > "$work/registry/config.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$reg_port
log:
  level: error
YML
  docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
  registry_pid=$!
  echo "docker-registry pid $registry_pid on 127.0.0.1:$reg_port"
  for _ in $(seq 100); do http_get "http://127.0.0.1:$reg_port/v2/" >/dev/null && return 0; sleep 0.1; done
  cat "$work/registry/log"; return 1
}
# The registry runs in this shell, not in the step's subshell, so the trap can stop it.
push() { ts tag django-demo "127.0.0.1:$reg_port/django-demo:1" && ts push "127.0.0.1:$reg_port/django-demo:1"; }
pull() { ts2 pull "127.0.0.1:$reg_port/django-demo:1"; }
same_id() {
  local a b
  a=$(ts images -q --no-trunc django-demo); b=$(ts2 images -q --no-trunc "127.0.0.1:$reg_port/django-demo:1")
  echo "built:  $a"; echo "pulled: $b"; [ -n "$a" ] && [ "$a" = "$b" ]
}
run_pulled() { ts2 run -d -p "$port2:8000" --name django-demo2 -e DJANGO_SECRET_KEY="$secret" "127.0.0.1:$reg_port/django-demo:1"; }
index2() { http_get "http://127.0.0.1:$port2/healthz" 120 && http_get "http://127.0.0.1:$port2/"; }
clean_up() {
  ts rm -f django-demo; ts2 rm -f django-demo2
  kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; registry_pid=
  ts ps -a -q | wc -l | xargs echo "containers left:"
}

step "Debian base image from this machine's apt mirror (debootstrap; cached after the first run)" base_image
step "tsbuild build -t django-demo fixtures/django" build
step "the image: non-root user, EXPOSE, HEALTHCHECK, CMD" inspect_image
step "manage.py test inside the image" run_tests
step "tsbuild run -d -p $port:8000 --name django-demo django-demo" run_app
step "wait until /healthz answers" healthz
step "GET / from the container" index
printf '\n\033[1m==> start a local docker-registry on 127.0.0.1:%s\033[0m\n' "$reg_port"
start_registry
step "tsbuild push 127.0.0.1:$reg_port/django-demo:1" push
step "tsbuild pull into a fresh root" pull
step "same image ID in both roots" same_id
step "run the pulled image (-p $port2:8000)" run_pulled
step "GET / from the pulled image's container" index2
step "clean up: containers, registry" clean_up
printf '\n\033[32mdemo: all steps passed in %d s\033[0m\n' $(( ($(date +%s%N) - t_all) / 1000000000 ))
