#!/bin/bash -e
# pi-gen (runs inside the image's root, under qemu-aarch64 on an x86 host): install affectlite and enable
# the service for the first boot. The profile stays auto; the board is detected at service start.
SRC=/opt/affectlite-src
args=(--no-start)
if [ -d "${SRC}/wheels" ]; then
    wheel=$(find "${SRC}/wheels" -maxdepth 1 -name 'affectlite-*.whl' | sort | tail -n 1)
    if [ -n "${wheel}" ]; then args+=(--source "${wheel}"); fi
fi
extra=()
if [ -s "${SRC}/install.args" ]; then read -r -a extra < "${SRC}/install.args" || true; fi
# pi-gen feeds this file to the chroot on stdin: keep the installer away from it.
bash "${SRC}/firmware_configs/raspberrypi/install.sh" "${args[@]}" "${extra[@]}" < /dev/null
