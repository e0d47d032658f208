#!/usr/bin/env bash
# First-boot installer used by cloud-init (user-data) and firstrun.sh: runs install.sh from the boot
# partition once the network is up, logs to /var/log/affectlite-firstboot.log, and marks success so it
# never runs twice. On failure the marker is not written and the next boot tries again.
#
# Boot partition layout (copy after flashing; the FAT partition is /boot/firmware on Bookworm/Trixie):
#   affectlite/                  <- a copy of the repository's firmware_configs/ folder
#   affectlite/wheels/           <- optional: affectlite-*.whl and its dependencies for an offline install
#                                   (pip download 'affectlite[litert,files]' --platform manylinux_2_27_aarch64
#                                    --python-version 3.11 --only-binary=:all: -d wheels)
#   affectlite/install.args      <- optional: extra install.sh arguments, one line (e.g. --profile rpi5)
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)   # .../affectlite/raspberrypi
BUNDLE=$(dirname -- "$HERE")
MARKER=/var/lib/affectlite-firstboot.done
LOG=/var/log/affectlite-firstboot.log

[ -e "$MARKER" ] && { echo "affectlite first-boot install already done ($MARKER)"; exit 0; }
exec > >(tee -a "$LOG") 2>&1
echo "=== affectlite first-boot install $(date -u +%FT%TZ) from $BUNDLE"

args=()
if [ -d "$BUNDLE/wheels" ]; then
    wheel=$(find "$BUNDLE/wheels" -maxdepth 1 -name 'affectlite-*.whl' | sort | tail -n 1)
    [ -n "$wheel" ] && args+=(--source "$wheel")
    args+=(--wheelhouse "$BUNDLE/wheels")
fi
if [ -f "$BUNDLE/install.args" ]; then
    extra=()
    read -r -a extra < "$BUNDLE/install.args" || true
    args+=("${extra[@]}")
fi

# Wait up to 2 minutes for the network (apt and pip need it unless everything is in wheels/).
for _ in $(seq 1 24); do
    getent hosts deb.debian.org >/dev/null 2>&1 && break
    [ -d "$BUNDLE/wheels" ] && break
    sleep 5
done

bash "$HERE/install.sh" "${args[@]}"
mkdir -p "$(dirname -- "$MARKER")"
date -u +%FT%TZ > "$MARKER"
echo "=== affectlite first-boot install finished"
