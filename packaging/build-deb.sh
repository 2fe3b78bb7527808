#!/bin/sh
# npm run package [-- OUTDIR]: builds symroute_<version>_<arch>.deb from this checkout (after
# `npm run build`), with dpkg-deb alone — no debian/ source tree, no debhelper. What a
# debhelper build would add is spelled out here: stripped addon, compressed man pages,
# md5sums, shlib dependencies, and the maintainer scripts dh_installsystemd would generate
# (packaging/debian/). SYMROUTE_DEB_VERSION overrides the version (tests build upgrades).
set -eu
umask 022
cd "$(dirname "$0")/.."
OUT=$(realpath "${1:-.}")
VERSION=${SYMROUTE_DEB_VERSION:-$(node -p "require('./package.json').version")}
ARCH=$(dpkg --print-architecture)
DEB="$OUT/symroute_${VERSION}_${ARCH}.deb"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/symroute-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT INT TERM
ROOT="$STAGE/root"
LIB="$ROOT/usr/lib/symroute"

# The daemon: compiled JavaScript, the addon, production dependencies only.
mkdir -p "$LIB/build/Release"
cp -r dist package.json package-lock.json "$LIB/"
cp build/Release/symroute_native.node "$LIB/build/Release/"
(cd "$LIB" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -f "$LIB/package-lock.json" "$LIB/node_modules/.package-lock.json"
# --version tells the package's version (the same unless SYMROUTE_DEB_VERSION overrides it).
node -e 'const f = process.argv[1], p = JSON.parse(require("fs").readFileSync(f)); p.version = process.argv[2];
  require("fs").writeFileSync(f, JSON.stringify(p, null, 2) + "\n")' "$LIB/package.json" "$VERSION"
# What the dependencies ship for their own development, docs and type checking is not needed
# to run them (and draws lintian warnings: dev scripts, docs loading remote scripts, VCS files).
find "$LIB/node_modules" -depth -type d \( -name test -o -name tests -o -name benchmarks -o -name bench -o -name docs \
  -o -name examples -o -name example -o -name .github -o -name .husky -o -path '*/zod/src' -o -path '*/node-addon-api/tools' \) \
  -exec rm -rf {} +
find "$LIB/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' -o -name '*.md' \
  -o -name '*.html' -o -name '*.yml' -o -name '*.sh' -o -name '.npmignore' -o -name '.git*' -o -name '.eslintrc*' \
  -o -name '.editorconfig' -o -name '.prettierrc*' -o -name '.taprc' -o -name '.nycrc*' -o -name 'tsconfig*.json' \) -delete
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$LIB/build/Release/symroute_native.node"
mkdir -p "$ROOT/usr/bin"
ln -s ../lib/symroute/dist/cli.js "$ROOT/usr/bin/symroute"

# The unit, the man pages, completions and the commented default config (from the manual).
install -D -m 644 systemd/symroute.service "$ROOT/usr/lib/systemd/system/symroute.service"
node packaging/docs.mjs "$ROOT" "$VERSION"
gzip -9n "$ROOT"/usr/share/man/man*/*
DOC="$ROOT/usr/share/doc/symroute"
mkdir -p "$DOC"
cat > "$DOC/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: symroute
Source: https://github.com/symroute/symroute

Files: *
Copyright: 2025-2026 symroute contributors
License: MIT

Files: usr/lib/symroute/node_modules/*
Copyright: the authors of each package (see its package.json)
License: MIT or ISC or Apache-2.0, as each package's package.json says

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this
 software and associated documentation files (the "Software"), to deal in the Software
 without restriction, including without limitation the rights to use, copy, modify, merge,
 publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
 to whom the Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
 INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
 PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
 FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 DEALINGS IN THE SOFTWARE.
COPYRIGHT
# Native package: the changelog is the upstream one (one entry per built version).
DATE=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'symroute (%s) unstable; urgency=medium\n\n  * Built from the symroute repository, see README.md there.\n\n -- symroute maintainers <symroute@lists.example.org>  %s\n' \
  "$VERSION" "$DATE" | gzip -9n > "$DOC/changelog.gz"
install -D -m 644 packaging/lintian-overrides "$ROOT/usr/share/lintian/overrides/symroute"

# Permissions as a package wants them: nothing writable by others, executables only where meant.
find "$ROOT" -type d -exec chmod 755 {} +
find "$ROOT" -type f -exec chmod 644 {} +
chmod 755 "$LIB/dist/cli.js"

# Control files.
mkdir -p "$ROOT/DEBIAN"
for script in postinst prerm postrm; do install -m 755 "packaging/debian/$script" "$ROOT/DEBIAN/$script"; done
echo /etc/symroute/symroute.yaml > "$ROOT/DEBIAN/conffiles"
mkdir -p "$STAGE/debian"
printf 'Source: symroute\n\nPackage: symroute\nArchitecture: any\n' > "$STAGE/debian/control"
SHLIBS=$(cd "$STAGE" && dpkg-shlibdeps -O "root/usr/lib/symroute/build/Release/symroute_native.node" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: symroute
Version: $VERSION
Architecture: $ARCH
Maintainer: symroute maintainers <symroute@lists.example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: nodejs (>= 20), $SHLIBS
Section: net
Priority: optional
Homepage: https://github.com/symroute/symroute
Description: per-NIC routing tables and source rules, kept converged
 On a server with several NICs, replies leave through whichever NIC the main
 routing table prefers, not the one the request came in on, and strict
 reverse-path filtering drops them. symroute keeps one routing table per NIC
 and a "from <address> lookup <table>" rule per address converged in real time
 over rtnetlink, and touches nothing it did not create.
CONTROL
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
