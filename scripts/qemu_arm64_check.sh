#!/usr/bin/env bash
# Proof on an x86-64 machine that affectlite installs and computes the same results on 64-bit ARM:
# a Debian Bookworm arm64 root under qemu-user (debootstrap + qemu-user-static through binfmt_misc,
# /sys mounted, an ARM /proc/cpuinfo of a Raspberry Pi 5 bound over the x86 one) gets a venv with the
# aarch64 wheels (ai-edge-litert, numpy, OpenCV...) and the affectlite wheel built from this tree, or with
# --installer the full Raspberry Pi install (firmware_configs/raspberrypi/install.sh). An amd64 root
# gets the same natively. Both run scripts/model_probe.py on the same int8 models and sample media, and
# the results are compared within tolerance (raw int8 outputs within --lsb steps, probabilities within
# --tol).
#
#   sudo scripts/qemu_arm64_check.sh [--models DIR] [--media DIR] [--tol 0.05] [--lsb 2]
#                                    [--installer] [--qemu-cpu CPU] [--work DIR] [--reuse] [--keep]
#
#   --models DIR   folder with *.tflite (+ .card.json); default sdk/affectlite/models
#   --media DIR    images/videos/audio/.txt to classify end to end; default sdk/affectlite/data (the
#                  shipped sample video and speech); --media "" compares only the raw model outputs
#   --installer    install with firmware_configs/raspberrypi/install.sh (apt OpenCV/PyAudio, numpy pinned to
#                  the system's): the full Raspberry Pi path, but ~150 apt packages configured under
#                  emulation (an hour or more on a loaded 2-core machine). Default: a venv with pip's wheels
#                  (affectlite[litert,files,opencv]), the same on both architectures; the installer itself
#                  is proven natively by chroot_install_check.sh.
#   --qemu-cpu CPU ARM core qemu emulates (default cortex-a76, the Raspberry Pi 5's; see below for "max")
#   --reuse        keep the installed roots from an earlier run (re-runs the install, which is idempotent)
#   --keep         do not delete the roots at the end
#
# Needs root, debootstrap, qemu-user-static and network (Debian mirror, PyPI). Cold it is slow (debootstrap's
# second stage runs under emulation: 30-60 min on a busy 2-core machine); the debootstrap roots are cached
# in WORK, and with --reuse --keep a re-run takes a few minutes. Writes
# WORK/qemu_arm64_check.json and prints "QEMU ARM64 CHECK: PASS" or exits non-zero.
set -euo pipefail

CHECK_NAME=qemu-arm64
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib_chroot.sh
. "$REPO/scripts/lib_chroot.sh"

MODELS=$REPO/sdk/affectlite/models
MEDIA=
[ -d "$REPO/sdk/affectlite/data" ] && MEDIA=$REPO/sdk/affectlite/data   # the shipped sample video + speech
TOL=0.05
LSB=2
WORK=${AFFECTLITE_CHECK_WORK:-/var/tmp/affectlite-checks}
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
REUSE=0
KEEP=0
MODE=wheels
QEMU_CPU=cortex-a76
while [ $# -gt 0 ]; do
    case "$1" in
        --models) MODELS=$(readlink -f -- "$2"); shift 2 ;;
        --media) MEDIA=${2:+$(readlink -f -- "$2")}; shift 2 ;;
        --tol) TOL=$2; shift 2 ;;
        --lsb) LSB=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --mirror) MIRROR=$2; shift 2 ;;
        --installer) MODE=installer; shift ;;
        --qemu-cpu) QEMU_CPU=$2; shift 2 ;;
        --reuse) REUSE=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) fail "unknown option $1" ;;
    esac
done

need_root
need_cmd debootstrap chroot mount umount python3
compgen -G "$MODELS/*.tflite" >/dev/null || { say "no *.tflite models in $MODELS yet: nothing to compare"; exit 3; }
if [ -n "$MEDIA" ] && [ ! -d "$MEDIA" ]; then fail "--media $MEDIA is not a folder"; fi
ensure_binfmt_aarch64
mkdir -p "$WORK"
START=$(date +%s)

cleanup() {
    chroot_umount_all
    if [ "$KEEP" -eq 0 ] && [ "$REUSE" -eq 0 ]; then
        safe_rm_root "$WORK/root-qemu-amd64"
        safe_rm_root "$WORK/root-qemu-arm64"
    fi
}
trap cleanup EXIT

# /proc/cpuinfo of a Raspberry Pi 5 (4 x Cortex-A76): the SDK's detection and XNNPACK read it.
FAKE_CPUINFO=$WORK/cpuinfo-rpi5
: > "$FAKE_CPUINFO"
for i in 0 1 2 3; do
    cat >> "$FAKE_CPUINFO" <<EOF
processor	: $i
BogoMIPS	: 108.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x4
CPU part	: 0xd0b
CPU revision	: 1

EOF
done
cat >> "$FAKE_CPUINFO" <<'EOF'
Revision	: d04170
Serial		: 0000000000000000
Model		: Raspberry Pi 5 Model B Rev 1.0
EOF

say "building the affectlite wheel"
DIST=$WORK/dist
WHEEL=$(build_wheel "$REPO" "$DIST")

declare -A SECONDS_FOR
for ARCH in amd64 arm64; do
    T0=$(date +%s)
    BASE=$WORK/base-$SUITE-$ARCH
    ROOT=$WORK/root-qemu-$ARCH
    make_base "$BASE" "$ARCH" "$SUITE" "ca-certificates,systemd,passwd,procps" "$MIRROR"
    if [ "$REUSE" -eq 1 ] && [ -f "$ROOT/.installed" ]; then
        say "reusing $ROOT"
    else
        copy_base "$BASE" "$ROOT"
    fi
    chroot_mount proc proc "$ROOT/proc"
    if [ "$ARCH" = arm64 ]; then
        chroot_mount sysfs sysfs "$ROOT/sys"
        chroot_mount bind "$FAKE_CPUINFO" "$ROOT/proc/cpuinfo"
    fi
    SRC=$ROOT/opt/affectlite-src
    rm -rf "$SRC"
    mkdir -p "$SRC/dist" "$SRC/models" "$SRC/media"
    cp "$WHEEL" "$SRC/dist/"
    cp -r "$REPO/firmware_configs" "$SRC/"
    cp "$REPO/scripts/model_probe.py" "$SRC/"
    cp "$MODELS"/*.tflite "$SRC/models/"
    cp "$MODELS"/*.json "$SRC/models/" 2>/dev/null || true
    [ -n "$MEDIA" ] && cp -r "$MEDIA"/. "$SRC/media/"
    # QEMU_CPU: which ARM core qemu-user emulates. Default cortex-a76, the Raspberry Pi 5's core (the fake
    # cpuinfo says the same). qemu 7.2's "max" core adds SVE+SME, and with it LiteRT/XNNPACK picks SME int8
    # kernels whose results came out 10-21 quantisation steps off (bit-exact again with sve=off or
    # sme=off): an emulation problem, and no Pi or Jetson has SME anyway.
    cpu_env=()
    [ "$ARCH" = arm64 ] && cpu_env=("QEMU_CPU=$QEMU_CPU")
    in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        "${cpu_env[@]}" "$@"; }

    say "[$ARCH] uname -m in the root: $(in_root uname -m)${cpu_env[*]:+ (${cpu_env[*]})}"
    WHEEL_IN=/opt/affectlite-src/dist/$(basename -- "$WHEEL")
    if [ "$MODE" = installer ]; then
        say "[$ARCH] install.sh (apt + venv + pip; under emulation for arm64)"
        in_root bash /opt/affectlite-src/firmware_configs/raspberrypi/install.sh \
            --source "$WHEEL_IN" --no-start > "$WORK/qemu-install-$ARCH.log" 2>&1 \
            || { tail -n 40 "$WORK/qemu-install-$ARCH.log" >&2; fail "[$ARCH] install.sh failed (log: $WORK/qemu-install-$ARCH.log)"; }
    else
        say "[$ARCH] apt python3-venv + pip wheels (affectlite[litert,files,opencv]; aarch64 wheels for arm64)"
        {
            in_root apt-get update -qq
            in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                python3-venv libsndfile1
            [ -x "$ROOT/opt/affectlite/venv/bin/python" ] || in_root python3 -m venv /opt/affectlite/venv
            in_root /opt/affectlite/venv/bin/python -m pip install --disable-pip-version-check --no-input \
                "${WHEEL_IN}[litert,files,opencv]"
            in_root /opt/affectlite/venv/bin/python -m pip install --disable-pip-version-check --no-input \
                --force-reinstall --no-deps "$WHEEL_IN"
        } > "$WORK/qemu-install-$ARCH.log" 2>&1 \
            || { tail -n 40 "$WORK/qemu-install-$ARCH.log" >&2; fail "[$ARCH] venv install failed (log: $WORK/qemu-install-$ARCH.log)"; }
    fi
    touch "$ROOT/.installed"
    grep -h "Successfully installed" "$WORK/qemu-install-$ARCH.log" | tail -n 2 | sed "s/^/[$CHECK_NAME] [$ARCH]   /"
    in_root /opt/affectlite/venv/bin/python -m affectlite.profiles detect > "$WORK/qemu-detect-$ARCH.txt" 2>&1 || true
    sed "s/^/[$CHECK_NAME] [$ARCH]   /" "$WORK/qemu-detect-$ARCH.txt" | head -n 6

    say "[$ARCH] model probe"
    media_arg=()
    [ -n "$MEDIA" ] && media_arg=(--media /opt/affectlite-src/media)
    in_root /opt/affectlite/venv/bin/python /opt/affectlite-src/model_probe.py run \
        --models /opt/affectlite-src/models "${media_arg[@]}" --out /opt/affectlite-src/probe.json \
        > "$WORK/qemu-probe-$ARCH.log" 2>&1 \
        || { tail -n 30 "$WORK/qemu-probe-$ARCH.log" >&2; fail "[$ARCH] model probe failed"; }
    cat "$WORK/qemu-probe-$ARCH.log"
    cp "$SRC/probe.json" "$WORK/probe-$ARCH.json"
    chroot_umount_all
    SECONDS_FOR[$ARCH]=$(( $(date +%s) - T0 ))
done

if [ "$ARCH" = arm64 ] && ! grep -q "rpi5" "$WORK/qemu-detect-arm64.txt"; then
    fail "auto-detection in the arm64 root did not pick rpi5 from the Raspberry Pi 5 cpuinfo"
fi

say "comparing amd64 and arm64"
python3 "$REPO/scripts/model_probe.py" compare "$WORK/probe-amd64.json" "$WORK/probe-arm64.json" \
    --tol "$TOL" --lsb "$LSB" --out "$WORK/qemu_arm64_compare.json" > /dev/null && MATCH=1 || MATCH=0
python3 - "$WORK/qemu_arm64_compare.json" "$WORK/qemu_arm64_check.json" "${SECONDS_FOR[amd64]}" \
    "${SECONDS_FOR[arm64]}" "$(( $(date +%s) - START ))" "$QEMU_CPU" "$MODE" <<'PY'
import json, sys, time
cmp_path, out, t_amd, t_arm, total, qemu_cpu, mode = sys.argv[1:]
c = json.load(open(cmp_path))
c.update({"check": "qemu_arm64", "result": "pass" if c["match"] else "fail", "seconds_amd64": int(t_amd),
          "seconds_arm64": int(t_arm), "total_seconds": int(total), "qemu_cpu": qemu_cpu, "install": mode,
          "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
json.dump(c, open(out, "w"), indent=1)
print(json.dumps({k: c[k] for k in ("result", "models", "media", "worst_raw_steps", "worst_probability_diff",
                                    "worst_face_box_px", "seconds_amd64", "seconds_arm64")}))
for p in c["problems"][:20]:
    print("  problem:", p)
PY
if [ "$MATCH" -eq 1 ]; then
    say "QEMU ARM64 CHECK: PASS ($(( $(date +%s) - START )) s) - $WORK/qemu_arm64_check.json"
else
    fail "amd64 and arm64 results differ beyond tolerance (see $WORK/qemu_arm64_check.json)"
fi
