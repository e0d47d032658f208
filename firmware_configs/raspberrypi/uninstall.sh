#!/usr/bin/env bash
# Remove what install.sh installed. Safe to run more than once.
#
#   sudo ./uninstall.sh            # stop + disable the service, remove the unit, drop-ins and the venv
#   sudo ./uninstall.sh --purge    # also /etc/affectlite, /var/lib/affectlite, /var/cache/affectlite and
#                                  # the 'affectlite' user (only if install.sh created it)
#
# apt packages (python3-opencv, python3-picamera2, ...) are left installed: other software may use them.
set -euo pipefail

PREFIX=/opt/affectlite
SERVICE_USER=affectlite
PURGE=0

log() { printf '[affectlite] %s\n' "$*"; }
die() { printf '[affectlite] ERROR: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
        --user) SERVICE_USER=${2:?--user needs a name}; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) die "unknown option: $1" ;;
    esac
done
case "$PREFIX" in /?*) ;; *) die "--prefix must be an absolute path other than /, got '$PREFIX'" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"

UNIT=/etc/systemd/system/affectlite.service
if [ -d /run/systemd/system ]; then
    if systemctl list-unit-files affectlite.service >/dev/null 2>&1; then
        systemctl disable --now affectlite.service 2>/dev/null || true
    fi
else
    systemctl disable affectlite.service 2>/dev/null || true
fi
rm -f /etc/systemd/system/multi-user.target.wants/affectlite.service
if [ -e "$UNIT" ] || [ -d "$UNIT.d" ]; then
    rm -rf "$UNIT" "$UNIT.d"
    log "removed $UNIT and its drop-ins"
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

created_user=
[ -f "$PREFIX/.created-user" ] && created_user=$(cat "$PREFIX/.created-user")
if [ -d "$PREFIX" ]; then
    rm -rf "$PREFIX/venv" "$PREFIX/share" "$PREFIX/constraints.txt"
    log "removed the venv in $PREFIX"
fi

if [ "$PURGE" -eq 1 ]; then
    rm -rf /etc/affectlite /var/lib/affectlite /var/cache/affectlite
    log "removed /etc/affectlite, /var/lib/affectlite, /var/cache/affectlite"
    if [ -n "$created_user" ] && [ "$created_user" = "$SERVICE_USER" ] && getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER" 2>/dev/null || true
        if getent group "$SERVICE_USER" >/dev/null; then groupdel "$SERVICE_USER" 2>/dev/null || true; fi
        log "removed user $SERVICE_USER"
    fi
    rm -f "$PREFIX/.created-user"
    rmdir "$PREFIX" 2>/dev/null || true
else
    log "kept /etc/affectlite (settings) and the $SERVICE_USER user; use --purge to remove them"
fi
log "uninstalled"
