#!/bin/sh
# Installs what antenne needs on Debian/Ubuntu: the FFmpeg development libraries it links,
# clang for the bindings, and the real peers its tests talk to (ffmpeg CLI, mediainfo, and
# PostgreSQL: tests start throwaway servers from /usr/lib/postgresql/*/bin; the cluster the
# package may create and start is not used).
# Idempotent: installs only what is missing.
set -eu

PKGS="pkg-config clang libclang-dev \
libavcodec-dev libavformat-dev libavfilter-dev libavdevice-dev libavutil-dev libswscale-dev libswresample-dev \
ffmpeg mediainfo fonts-dejavu-core make \
postgresql postgresql-client python3 curl jq \
srt-tools libsrt-gnutls-dev gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-tuspy"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi
