#!/usr/bin/env bash
# Packaging test (run by .ci/run; needs root for the namespaces): pack lcsync as `npm pack` does for a
# release, install the tarball globally into a temporary prefix with no compiler on PATH, and run the
# installed binary: --version, index (compared with the repository's own build), the man page, and one
# share/sync between two network namespaces of our own. Any failing step fails the script.
#
# Prints the tarball size and the install time. Leaves nothing behind: the temporary directory, the
# namespaces (prefix lcsync-pack-<pid>) and the processes it started go on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { echo "pack-test: $*"; }
fail() {
  echo "pack-test: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (network namespaces for the share/sync step)"
for tool in ip sha256sum man timeout; do command -v "$tool" >/dev/null || fail "$tool is missing"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/lcsync-pack.XXXXXX")
ns=lcsync-pack-$$
pids=()
stop() { # PID: SIGTERM, then SIGKILL after 3 s
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  for pid in "${pids[@]}"; do stop "$pid"; done
  for n in "$ns-a" "$ns-b"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- pack -------------------------------------------------------------------------------------------------
say "npm pack (prepack builds dist, the oclif manifest and the prebuilt addon)"
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "npm pack"; }
tgz=$(ls "$work"/lcsync-*.tgz)
# prebuildify moves the build it makes; prepack rebuilds it, so the tests after this one use the source build.
[ -f build/Release/lcsync.node ] || fail "npm pack left no source build in build/Release"
tar -tzf "$tgz" >"$work/contents"
for must in package/bin/run.js package/dist/index.js package/dist/bundle/cli/main.js package/dist/bundle/commands/sync.js \
  package/dist/bundle/core/index/hashpool.js package/dist/bundle/oclif.cjs package/dist/bundle/oclif.cjs.v8cache package/oclif.manifest.json package/man/lcsync.1 \
  package/prebuilds/linux-x64/lcsync.node package/binding.gyp package/native/addon.c; do
  grep -qx "$must" "$work/contents" || fail "the tarball lacks ${must#package/}"
done
# dist/cli, dist/commands and dist/hooks are tsc's output of what the CLI runs from dist/bundle/ (and they import
# @oclif/core, a devDependency): the bundle replaces them.
if grep -E '^package/(test|bench|src|scripts|\.ci|build|dist/cli|dist/commands|dist/hooks)/|\.test\.|\.tsbuildinfo$' "$work/contents"; then
  fail "the tarball holds files that do not run (above)"
fi
say "tarball $(basename "$tgz"): $(stat -c %s "$tgz") bytes, $(wc -l <"$work/contents") files"

# --- a PATH without a compiler --------------------------------------------------------------------------
# node and npm only (and sh, which runs lifecycle scripts): no cc, gcc, g++, make or python, so the install
# can only use the prebuilt addon. node-gyp itself must fail here, which proves nothing could be built.
nocc=$work/nocc-bin
mkdir -p "$nocc"
ln -s "$(command -v node)" "$nocc/node"
npm_cli=$(readlink -f "$(command -v npm)")
ln -s "$npm_cli" "$nocc/npm"
ln -s "$(command -v sh)" "$nocc/sh"
for tool in cc gcc g++ c++ clang make python3 python; do
  if PATH=$nocc command -v "$tool" >/dev/null 2>&1; then fail "$tool is on the compiler-free PATH"; fi
done
node_gyp=$(dirname "$npm_cli")/../node_modules/node-gyp/bin/node-gyp.js
[ -f "$node_gyp" ] || fail "npm's node-gyp not found at $node_gyp"
mkdir -p "$work/gyp-probe"
cp -r binding.gyp native "$work/gyp-probe/"
if (cd "$work/gyp-probe" && env -u CC -u CXX -u PYTHON -u npm_config_python PATH="$nocc" node "$node_gyp" rebuild) \
  >"$work/gyp-probe.log" 2>&1; then
  fail "node-gyp could build the addon without a compiler on PATH"
fi
say "node-gyp cannot build here: $(grep -m1 -o 'Could not find any Python[^.]*\|not found: make\|gyp ERR! stack Error: .*' "$work/gyp-probe.log" || echo 'it fails')"

# --- install ----------------------------------------------------------------------------------------------
prefix=$work/prefix
say "npm install -g --prefix <tmp> --allow-scripts=file:<tarball> <tarball> (compiler hidden from PATH)"
t0=$(date +%s.%N)
if ! (cd "$work" && env -u CC -u CXX -u PYTHON -u npm_config_python PATH="$nocc" \
  npm install -g --prefix "$prefix" --no-audit --no-fund --foreground-scripts --allow-scripts="file:$tgz" "$tgz") \
  >"$work/install.log" 2>&1; then
  cat "$work/install.log" >&2
  fail "npm install -g of the tarball"
fi
t1=$(date +%s.%N)
say "installed in $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
# npm 11 reads allowScripts of the installing root only: a global install names the package with
# --allow-scripts (file:<tarball> for a file, the bare name from the registry) or warns.
if grep -E "not yet covered by allowScripts|^lcsync: no prebuilt addon|gyp ERR" "$work/install.log"; then
  fail "the install warned or tried to build (above)"
fi
pkg=$prefix/lib/node_modules/lcsync
lcsync=$prefix/bin/lcsync
[ -x "$lcsync" ] || fail "no $lcsync after the install"
[ ! -e "$pkg/build" ] || fail "the install built the addon from source instead of using the prebuild"
loaded=$(cd "$pkg" && PATH=$nocc node -e "console.log(require('node-gyp-build').path('.'))")
[ "$loaded" = "$pkg/prebuilds/linux-x64/lcsync.node" ] || fail "the addon loads from $loaded, not the prebuild"
say "addon: the prebuild loads ($loaded)"

# --- run the installed binary -----------------------------------------------------------------------------
version=$(PATH=$nocc "$lcsync" --version)
want=$(node -p "require('./package.json').version")
echo "$version"
[[ "$version" == lcsync/"$want"* ]] || fail "lcsync --version printed '$version', not lcsync/$want"
# oclif from the bundle's CommonJS file with the code cache the build made (src/cli/codecache.ts), under the same node.
preload=$(node -p "require('node:url').pathToFileURL(process.argv[1]).href" "$repo/test/fixtures/loadlog.mjs")
PATH=$nocc NODE_OPTIONS="--import $preload" LCSYNC_LOAD_LOG="$work/load.log" "$lcsync" --version >/dev/null || fail "lcsync --version with the load recorder"
grep -qx 'codecache used' "$work/load.log" || fail "the installed lcsync did not use oclif's code cache: $(grep codecache "$work/load.log")"
say "oclif's code cache: used"

# index: the vectors when the repository has them, and a generated file; the installed binary must give
# the same root hashes as the repository's own build.
mkdir -p "$work/data"
node -e "const b=Buffer.alloc(3_000_017); for (let i=0;i<b.length;i++) b[i]=(i*2654435761>>>13)&255; require('fs').writeFileSync(process.argv[1], b)" \
  "$work/data/generated.bin"
inputs=("$work/data/generated.bin")
[ -d test/vectors/files ] && inputs+=("$repo/test/vectors/files")
for input in "${inputs[@]}"; do
  got=$(PATH=$nocc "$lcsync" index --json "$input") || fail "installed lcsync index $input"
  ref=$(node bin/run.js index --json "$input") || fail "repository lcsync index $input"
  [ "$got" = "$ref" ] || fail "index of $input differs between the installed package and the repository"
  say "index $(basename "$input"): root $(node -p "JSON.parse(process.argv[1]).root.hash" "$got"), same as the repository's"
done

# man: the page npm linked into the prefix.
page=$(MANPATH=$prefix/share/man man -w lcsync) || fail "man -w lcsync finds no page under the prefix"
linked=$prefix/share/man/man1/lcsync.1
[ -e "$linked" ] || fail "npm linked no man page to $linked"
[ "$(readlink -f "$page")" = "$(readlink -f "$linked")" ] || fail "man found $page, not the installed page"
MANPATH=$prefix/share/man MANWIDTH=80 man -P cat lcsync 2>/dev/null | grep -q '^NAME' || fail "man lcsync does not render"
say "man lcsync: $page renders"

# --- share and sync in a lab: two namespaces on a veth pair ----------------------------------------------
ip netns add "$ns-a"
ip netns add "$ns-b"
for n in "$ns-a" "$ns-b"; do
  ip netns exec "$n" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
  ip -n "$n" link set lo up
done
ip link add e0 netns "$ns-a" type veth peer name e0 netns "$ns-b"
for n in "$ns-a" "$ns-b"; do ip -n "$n" link set e0 up; done
for _ in $(seq 50); do
  ip -n "$ns-a" -6 addr show dev e0 scope link | grep -q 'inet6 fe80' && ip -n "$ns-b" -6 addr show dev e0 scope link | grep -q 'inet6 fe80' && break
  sleep 0.1
done

ip netns exec "$ns-a" timeout 120 env PATH="$nocc" "$lcsync" share --json -v -b -i e0 --query-interval 2 --no-cache \
  --rundir "$work/run" "$work/data/generated.bin" >"$work/share.out" 2>"$work/share.err" &
pids+=($!)
hash=
for _ in $(seq 150); do
  hash=$(grep -o '"hash": *"[0-9a-f]\{64\}"' "$work/share.out" | head -1 | grep -o '[0-9a-f]\{64\}' || true)
  [ -n "$hash" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/share.err" >&2; fail "the installed share exited"; }
  sleep 0.1
done
[ -n "$hash" ] || { cat "$work/share.err" >&2; fail "the installed share printed no root hash in 15 s"; }
if ! ip netns exec "$ns-b" timeout 90 env PATH="$nocc" "$lcsync" sync -b -i e0 --timeout 60 "$hash" "$work/out.bin" \
  >"$work/sync.out" 2>&1; then
  cat "$work/sync.out" "$work/share.err" >&2
  fail "the installed sync"
fi
[ "$(sha256sum <"$work/out.bin")" = "$(sha256sum <"$work/data/generated.bin")" ] || fail "the synced file differs"
# The share served because it saw the receiver's MLD report: the raw ICMPv6 socket of the prebuilt addon works.
grep -q 'mld: watching MLD on e0' "$work/share.err" || { cat "$work/share.err" >&2; fail "the share did not watch MLD"; }
stop "${pids[0]}"
pids=()
say "share/sync in namespaces $ns-a/$ns-b: $(stat -c %s "$work/out.bin") bytes, same sha256"
say "ok"
