#!/bin/bash -e
# pi-gen (runs on the build host, cwd = this folder): copy the installer and optional wheels into the image.
# shellcheck disable=SC2154  # ROOTFS_DIR is set by pi-gen
FIRMWARE_DIR=$(cd ../../../.. && pwd)    # .../firmware_configs
DEST="${ROOTFS_DIR}/opt/affectlite-src"
rm -rf "${DEST}"
install -d "${DEST}"
cp -r "${FIRMWARE_DIR}" "${DEST}/firmware_configs"
if [ -f "${FIRMWARE_DIR}/../docs/deployment.md" ]; then
    install -D -m 0644 "${FIRMWARE_DIR}/../docs/deployment.md" "${DEST}/docs/deployment.md"
fi
if [ -n "${AFFECTLITE_WHEELS:-}" ]; then
    install -d "${DEST}/wheels"
    cp "${AFFECTLITE_WHEELS}"/*.whl "${DEST}/wheels/"
fi
printf '%s\n' "${AFFECTLITE_INSTALL_ARGS:-}" > "${DEST}/install.args"
