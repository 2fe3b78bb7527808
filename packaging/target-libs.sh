#!/bin/sh
# packaging/target-libs.sh ARCH DIR: the libraries the runtime and the addon link against
# (libc6, libgcc-s1, libstdc++6), as Debian 12 ships them for ARCH, extracted into DIR/root
# by mmdebstrap (no maintainer scripts run, so any architecture works without emulation),
# and a dpkg database for them in DIR/admin: what dpkg-shlibdeps needs to compute the
# .deb's Depends from the packages' symbols files for either architecture, whatever the
# build machine's own architecture and installed library versions are.
set -eu
ARCH=$1 DIR=$2
MIRROR=${SYMROUTE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOT="$DIR/root" ADMIN="$DIR/admin"
mkdir -p "$DIR"
mmdebstrap --quiet --variant=extract --arch="$ARCH" --include=libc6,libgcc-s1,libstdc++6 \
  --skip=cleanup/apt/cache bookworm "$ROOT" "deb $MIRROR bookworm main" >/dev/null
mkdir -p "$ADMIN/info" "$ADMIN/updates"
echo 1 > "$ADMIN/info/format"
echo "$ARCH" > "$ADMIN/arch"
: > "$ADMIN/status"
: > "$ADMIN/available"
CONTROL="$DIR/control"
for deb in "$ROOT"/var/cache/apt/archives/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  rm -rf "$CONTROL" && dpkg-deb -e "$deb" "$CONTROL"
  { dpkg-deb -f "$deb" | sed '/^Package:/a Status: install ok installed'; echo; } >> "$ADMIN/status"
  for file in symbols shlibs; do
    if [ -f "$CONTROL/$file" ]; then cp "$CONTROL/$file" "$ADMIN/info/$pkg:$ARCH.$file"; fi
  done
  # Paths as seen from the build machine, where dpkg-shlibdeps finds the libraries.
  dpkg-deb -c "$deb" | awk '{print $6}' | sed -e 's#^\./#/#' -e 's#/$##' -e "s#^#$ROOT#" > "$ADMIN/info/$pkg:$ARCH.list"
done
rm -rf "$CONTROL"
