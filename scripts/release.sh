#!/usr/bin/env bash
# Release archives: ready executables for people without a Rust toolchain.
# Builds ringport (release profile) for two targets and packs each with
# README.md and the licences into dist/:
#
#   ringport-<version>-x86_64-unknown-linux-musl.tar.gz  a static binary for any x86-64 Linux
#   ringport-<version>-x86_64-pc-windows-gnu.zip         ringport.exe for 64-bit Windows 10+
#   SHA256SUMS                                           check with `sha256sum -c SHA256SUMS`
#
# The version is the workspace's (Cargo.toml). Archives are reproducible-ish:
# fixed file order, owner and mtime (the last commit's time, or
# SOURCE_DATE_EPOCH when set), no gzip timestamp.
#
# Exit status: 0 built; 1 failed; 3 a target's toolchain (rustup target,
# MinGW-w64, zip) is missing and could not be installed, after one line
# "release skipped: <reason>".
#
# Usage: scripts/release.sh [--out DIR]     (from anywhere; default DIR: dist)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=dist
while [ $# -gt 0 ]; do
    case $1 in
    --out)
        OUT=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "release.sh: unknown argument '$1' (try --out DIR)" >&2
        exit 2
        ;;
    esac
done

LINUX=x86_64-unknown-linux-musl
WINDOWS=x86_64-pc-windows-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FILES=(README.md LICENSE-MIT LICENSE-APACHE)

skip() {
    echo "release skipped: $*"
    exit 3
}

# `cargo pkgid` ends in `#0.1.0` (or `#ringport@0.1.0`): the root package's
# version, which it takes from the workspace.
VERSION=$(cargo pkgid --offline -p ringport 2>/dev/null || cargo pkgid -p ringport)
VERSION=${VERSION##*[#@]}
[ -n "$VERSION" ] || {
    echo "release.sh: could not read the version from Cargo.toml" >&2
    exit 1
}
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
# MinGW's strip stamps the .exe's header with SOURCE_DATE_EPOCH, else now.
export SOURCE_DATE_EPOCH=$EPOCH

# --- toolchains ------------------------------------------------------------
# The musl target links with the system cc against the musl C library that
# rustup ships with the target (no musl-tools); the Windows build links
# with MinGW-w64.
need_apt=()
command -v x86_64-w64-mingw32-gcc >/dev/null || need_apt+=(gcc-mingw-w64-x86-64)
command -v zip >/dev/null || need_apt+=(zip)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        skip "${need_apt[*]} missing and apt-get cannot install them here"
    fi
    log=$(mktemp)
    { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"; } >"$log" 2>&1 ||
        skip "apt-get install ${need_apt[*]} failed: $(tail -n 1 "$log")"
    rm -f "$log"
fi
for target in $LINUX $WINDOWS; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        timeout 600 rustup target add "$target" >/dev/null 2>&1 ||
            skip "rustup target add $target failed"
    fi
done

# --- build -----------------------------------------------------------------
for target in $LINUX $WINDOWS; do
    echo "== release: building ringport $VERSION for $target (release profile)"
    cargo build --release --locked --target "$target" --bin ringport
done

# --- pack ------------------------------------------------------------------
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/ringport-release.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# `stage TARGET EXE STRIP`: a folder ringport-<version>-<target>/ holding
# the binary and FILES, every entry with the same mtime and plain modes. The
# shipped binary loses its line tables (25 MB down to about 5) but keeps its
# symbols, so a backtrace still names functions.
stage() {
    local dir="$STAGE/ringport-$VERSION-$1"
    mkdir -p "$dir"
    "$3" --strip-debug -o "$dir/$2" "$TARGET_DIR/$1/release/$2"
    cp "${FILES[@]}" "$dir/"
    chmod 0755 "$dir/$2"
    (cd "$dir" && chmod 0644 "${FILES[@]}")
    find "$dir" -exec touch -h -d "@$EPOCH" {} +
    echo "ringport-$VERSION-$1"
}

name=$(stage $LINUX ringport strip)
rm -f "$OUT/$name.tar.gz"
tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
    --format=gnu -cf - "$name" | gzip -9 -n >"$OUT/$name.tar.gz"
echo "$OUT/$name.tar.gz"

name=$(stage $WINDOWS ringport.exe x86_64-w64-mingw32-strip)
rm -f "$OUT/$name.zip"
# -X: no extra attributes (uid/gid, extended times); entries in sorted order.
(cd "$STAGE" && find "$name" | LC_ALL=C sort | TZ=UTC zip -q -X -9 "$OUT/$name.zip" -@)
echo "$OUT/$name.zip"

(cd "$OUT" && sha256sum "ringport-$VERSION-$LINUX.tar.gz" "ringport-$VERSION-$WINDOWS.zip" >SHA256SUMS)
echo "$OUT/SHA256SUMS"
cat "$OUT/SHA256SUMS"
