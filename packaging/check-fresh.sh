#!/usr/bin/env bash
# The README's run command on a fresh machine: a Debian chroot with only a C
# toolchain (what rustup itself needs to link), git, and this machine's Rust
# toolchain with the wasm targets copied in. No sudo, no Python, no Redis,
# tinyproxy or dnsmasq, no cargo cache, no target directory. `make run` must
# build levee from cold and start it on its embedded defaults.
#
#   packaging/check-fresh.sh [CHROOT]     (as root: debootstrap and chroot)
#
# Not part of `make test`: a cold build of the dist profile takes 15-25
# minutes on 2 cores. Exit status 0 when levee answered /healthz from the
# chroot; 1 otherwise, with the last lines of its output.
set -euo pipefail
ROOT=${1:-/var/tmp/levee-fresh}
SRC=$(cd "$(dirname "$0")/.." && pwd)
SYSROOT=$(rustc --print sysroot)
TOOLCHAIN=$(basename "$SYSROOT")
RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_BIN=$(dirname "$(command -v rustup)")

command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
if [ ! -x "$ROOT/bin/sh" ]; then
    debootstrap --variant=minbase --include=make,gcc,libc6-dev,ca-certificates,git,xz-utils \
        bookworm "$ROOT" http://deb.debian.org/debian
fi
for absent in sudo python3 redis-server tinyproxy dnsmasq; do
    if chroot "$ROOT" sh -c "command -v $absent" >/dev/null 2>&1; then
        echo "the chroot has $absent: it is not a fresh machine" >&2
        exit 1
    fi
done
# The local CAs this machine trusts (a network that intercepts TLS has
# one), as any machine on that network would: crates.io is reached through
# it.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1
fi
# Rust as rustup installs it: the toolchain, its settings, the proxies.
mkdir -p "$ROOT/root/.rustup/toolchains" "$ROOT/root/.cargo/bin"
cp -a "$RUSTUP_HOME/settings.toml" "$ROOT/root/.rustup/"
[ -d "$ROOT/root/.rustup/toolchains/$TOOLCHAIN" ] \
    || cp -a "$SYSROOT" "$ROOT/root/.rustup/toolchains/"
for tool in rustup cargo rustc; do
    cp -a "$CARGO_BIN/$tool" "$ROOT/root/.cargo/bin/"
done
rm -rf "$ROOT/src"
git clone -q "$SRC" "$ROOT/src"
# /proc and /dev for the build; unmounted on the way out.
mount --bind /proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
LOG=$ROOT/make-run.log
PID=
cleanup() {
    [ -n "$PID" ] && kill -- -"$PID" 2>/dev/null || true
    umount "$ROOT/proc" "$ROOT/dev" 2>/dev/null || true
}
trap cleanup EXIT
setsid chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/root/.cargo/bin:/usr/bin:/bin \
    sh -c 'cd /src && make run' >"$LOG" 2>&1 &
PID=$!
started=$(date +%s)
while ! grep -q '^levee listening on' "$LOG"; do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "make run ended before levee listened:" >&2
        tail -30 "$LOG" >&2
        exit 1
    fi
    if [ $(( $(date +%s) - started )) -gt 3600 ]; then
        echo "no levee after an hour:" >&2
        tail -30 "$LOG" >&2
        exit 1
    fi
    sleep 5
done
elapsed=$(( $(date +%s) - started ))
grep '^levee: \[' "$LOG"
grep '^levee listening on\|^levee admin on' "$LOG"
admin=$(awk '/^levee admin on/{print $4}' "$LOG")
# The chroot shares this machine's network: ask from outside.
health=$(curl -s "http://$admin/healthz" || true)
echo "make run: levee listening after ${elapsed}s from cold; /healthz: ${health:-no answer}"
[ -n "$health" ]
