#!/usr/bin/env bash
# `npm run demo`: the main job end to end on a built-in default.
# Today (foundation): make a deterministic busybox base image from Debian's
# busybox-static, import it, inspect it, run a container from it, save it,
# load it into a fresh store.
# It grows as the runtime, builder and registry client land.
set -euo pipefail
cd "$(dirname "$0")/.."
TSBUILD="$PWD/bin/tsbuild"
work=$(mktemp -d /tmp/tsbuild-demo-XXXXXX)
keep=${TSBUILD_DEMO_KEEP:-}
cleanup() { if [ -z "$keep" ]; then rm -rf "$work"; else echo "demo: kept $work"; fi; }
trap cleanup EXIT

step() {
  local name=$1; shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local t0; t0=$(date +%s%N)
  if ! "$@"; then
    printf '\033[31mdemo: step "%s" failed\033[0m\n' "$name" >&2
    exit 1
  fi
  printf '    (%s: %d ms)\n' "$name" $(( ($(date +%s%N) - t0) / 1000000 ))
}

export SOURCE_DATE_EPOCH=1704067200
step "make busybox rootfs from Debian's busybox-static" node dist/fixtures/busybox/make-rootfs.js "$work/busybox-rootfs.tar"
step "sha256 of the rootfs tarball (same every run)" sha256sum "$work/busybox-rootfs.tar"
step "tsbuild import" $TSBUILD --root "$work/root" import --change 'CMD ["sh"]' --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' "$work/busybox-rootfs.tar" busybox:latest
step "tsbuild images" $TSBUILD --root "$work/root" images
step "tsbuild inspect" $TSBUILD --root "$work/root" inspect --format '{{.Id}} cmd={{json .Config.Cmd}} layers={{json .RootFS.Layers}}' busybox
step "tsbuild history" $TSBUILD --root "$work/root" history busybox
step "tsbuild run --rm (namespaces + overlay over the snapshots)" $TSBUILD --root "$work/root" run --rm --hostname demo busybox sh -c 'echo "hello from $(hostname), pid $$, $(cat /etc/os-release | grep PRETTY)"; touch /written-in-container'
step "the image is unchanged by the container" bash -c "! $TSBUILD --root '$work/root' run --rm busybox test -e /written-in-container"
step "tsbuild save (docker-archive)" $TSBUILD --root "$work/root" save -o "$work/busybox-image.tar" busybox:latest
step "tsbuild load into a fresh store" $TSBUILD --root "$work/root2" load -i "$work/busybox-image.tar"
step "same image ID in the fresh store" bash -c "a=\$($TSBUILD --root '$work/root' images -q --no-trunc busybox); b=\$($TSBUILD --root '$work/root2' images -q --no-trunc busybox); echo \"\$a\"; [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
printf '\n\033[32mdemo: all steps passed\033[0m\n'
