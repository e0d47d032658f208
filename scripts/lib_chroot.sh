#!/usr/bin/env bash
# Helpers shared by chroot_install_check.sh and qemu_arm64_check.sh (sourced, not run).
# They build a Debian root with debootstrap (cached), mount what a chroot needs and always unmount it
# again before anything is deleted.

# shellcheck disable=SC2034  # variables are used by the scripts that source this file
CHROOT_MOUNTS=()

say() { printf '[%s] %s\n' "${CHECK_NAME:-check}" "$*"; }
fail() { printf '[%s] FAIL: %s\n' "${CHECK_NAME:-check}" "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap, chroot and mount need it)"; }

need_cmd() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || fail "'$c' is missing: apt-get install debootstrap qemu-user-static"; done
}

# Is anything mounted at or below $1?
mounted_below() {
    local root
    root=$(readlink -f -- "$1")
    awk -v r="$root" '$2 == r || index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

chroot_mount() {  # type|bind source target [options]
    local kind=$1 src=$2 dst=$3
    if [ -f "$src" ]; then
        [ -e "$dst" ] || { mkdir -p "$(dirname -- "$dst")"; : > "$dst"; }   # a file bound over a file
    else
        mkdir -p "$dst"
    fi
    if [ "$kind" = bind ]; then
        mount --bind "$src" "$dst"
    else
        mount -t "$kind" "$src" "$dst"
    fi
    CHROOT_MOUNTS+=("$dst")
}

chroot_umount_all() {
    local i
    for ((i = ${#CHROOT_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${CHROOT_MOUNTS[i]}" 2>/dev/null || umount -l "${CHROOT_MOUNTS[i]}" 2>/dev/null || true
    done
    CHROOT_MOUNTS=()
}

# Delete a root folder, refusing while anything is still mounted inside it.
safe_rm_root() {
    local root=$1
    if [ -z "$root" ] || [ "$root" = / ]; then fail "refusing to delete '$root'"; fi
    [ -e "$root" ] || return 0
    if mounted_below "$root"; then
        fail "refusing to delete $root: something is still mounted below it (see /proc/mounts)"
    fi
    rm -rf --one-file-system -- "$root"
}

# Register qemu-user-static for aarch64 with binfmt_misc (needed to chroot into an arm64 root).
ensure_binfmt_aarch64() {
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || fail "cannot mount binfmt_misc"
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        [ -r /usr/lib/binfmt.d/qemu-aarch64.conf ] || fail "qemu-user-static is not installed"
        cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register \
            || fail "cannot register qemu-aarch64 with binfmt_misc"
        say "registered qemu-aarch64 with binfmt_misc"
    fi
}

# debootstrap a base root once into a cache folder; later runs copy it.
#   make_base CACHE_DIR ARCH SUITE INCLUDE_PACKAGES MIRROR
make_base() {
    local cache=$1 arch=$2 suite=$3 include=$4 mirror=$5
    if [ -f "$cache/.base-ok" ] && [ "$(cat "$cache/.base-ok")" = "$arch $suite $include" ]; then
        say "using cached $suite/$arch root $cache"
        return 0
    fi
    safe_rm_root "$cache"
    mkdir -p "$(dirname -- "$cache")"
    say "debootstrap $suite/$arch into $cache (a few minutes; cached afterwards)"
    debootstrap --arch="$arch" --variant=minbase --include="$include" "$suite" "$cache" "$mirror" \
        > "$cache.debootstrap.log" 2>&1 || { tail -n 30 "$cache.debootstrap.log" >&2; fail "debootstrap failed"; }
    echo "$arch $suite $include" > "$cache/.base-ok"
}

# Fresh working copy of the cached base.
copy_base() {
    local cache=$1 root=$2
    safe_rm_root "$root"
    mkdir -p "$(dirname -- "$root")"
    cp -a "$cache" "$root"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # Trust the build host's local CAs too (a TLS-intercepting proxy in front of PyPI, for example):
    # local certificates survive later ca-certificates updates inside the root, the bundle works at once.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
}

build_wheel() {  # repo out_dir -> prints the wheel path
    # Builds from a copy, so the shared working tree gets no build/ or egg-info folders.
    local repo=$1 out=$2 src
    src=$(mktemp -d)
    rm -rf "$out"
    mkdir -p "$out"
    (cd "$repo" && tar --exclude=__pycache__ --exclude='*.egg-info' -cf - setup.py pyproject.toml README.md sdk converters) \
        | tar -xf - -C "$src"
    # --no-build-isolation builds with this python's setuptools and wheel (no network needed); a python
    # without the wheel package cannot do that, so it builds isolated instead (pip fetches the build deps)
    local iso=--no-build-isolation
    python3 -c "import setuptools, wheel" 2>/dev/null || iso=
    python3 -m pip wheel --quiet --no-deps $iso -w "$out" "$src" >/dev/null \
        || { rm -rf "$src"; fail "could not build the affectlite wheel (needs setuptools and wheel: python3 -m pip install wheel)"; }
    rm -rf "$src"
    ls "$out"/affectlite-*.whl
}
