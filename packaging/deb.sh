#!/bin/sh
# packaging/build.sh's .deb: ROOT (the staged tree) ARCH VERSION XZ-LEVEL DEB TARGET-LIBS
# (the directory packaging/target-libs.sh made for ARCH).
# What a debhelper build would add is done here: md5sums, shlib dependencies, conffiles and
# the maintainer scripts dh_installsystemd would generate (packaging/debian/).
set -eu
ROOT=$1 ARCH=$2 VERSION=$3 LEVEL=$4 DEB=$5 LIBS=$6
cd "$(dirname "$0")/.."
PKG=$(mktemp -d "${TMPDIR:-/tmp}/symroute-deb.XXXXXX")
trap 'rm -rf "$PKG"' EXIT INT TERM
cp -a "$ROOT" "$PKG/root"
ROOT="$PKG/root"
mkdir -p "$ROOT/DEBIAN"
for script in postinst prerm postrm; do install -m 755 "packaging/debian/$script" "$ROOT/DEBIAN/$script"; done
echo /etc/symroute/symroute.yaml > "$ROOT/DEBIAN/conffiles"

# Depends: what dpkg-shlibdeps finds for the runtime and the addon, nothing else, from the
# symbols files of Debian 12's libraries for ARCH (packaging/target-libs.sh).
mkdir -p "$PKG/debian"
printf 'Source: symroute\n\nPackage: symroute\nArchitecture: any\n' > "$PKG/debian/control"
TRIPLET=$(dpkg-architecture -a"$ARCH" -qDEB_HOST_MULTIARCH 2>/dev/null)
SHLIBS=$(cd "$PKG" && DEB_HOST_ARCH=$ARCH dpkg-shlibdeps --admindir="$LIBS/admin" \
  -l"$LIBS/root/lib/$TRIPLET" -l"$LIBS/root/usr/lib/$TRIPLET" -O \
  root/usr/lib/symroute/node/bin/node root/usr/lib/symroute/build/Release/symroute_native.node 2>"$PKG/shlibdeps.log" |
  sed -n 's/^shlibs:Depends=//p') || true
[ -n "$SHLIBS" ] || { cat "$PKG/shlibdeps.log" >&2; echo "deb.sh: dpkg-shlibdeps found no dependencies for $ARCH" >&2; exit 1; }
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: symroute
Version: $VERSION
Architecture: $ARCH
Maintainer: symroute maintainers <symroute@lists.example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: $SHLIBS
Section: net
Priority: optional
Homepage: https://github.com/symroute/symroute
Description: per-NIC routing tables and source rules, kept converged
 On a server with several NICs, replies leave through whichever NIC the main
 routing table prefers, not the one the request came in on, and strict
 reverse-path filtering drops them. symroute keeps one routing table per NIC
 and a "from <address> lookup <table>" rule per address converged in real time
 over rtnetlink, and touches nothing it did not create.
 .
 The package carries the Node.js it runs on; it needs none from the system.
CONTROL
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz -z"$LEVEL" --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
