#!/bin/sh
# packaging/build.sh's .rpm: ROOT (the staged tree) RPMARCH VERSION XZ-LEVEL OUTDIR.
# rpmbuild (Debian's rpm package works) with packaging/symroute.spec, in a scratch _topdir.
set -eu
ROOT=$1 RPMARCH=$2 VERSION=$3 LEVEL=$4 OUT=$5
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}
cd "$(dirname "$0")/.."
TOP=$(mktemp -d "${TMPDIR:-/tmp}/symroute-rpm.XXXXXX")
trap 'rm -rf "$TOP"' EXIT INT TERM
rpmbuild -bb --quiet --nodeps --target "$RPMARCH-linux" \
  --define "_topdir $TOP" --define "_rpmdir $OUT" --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "stage $ROOT" --define "pkgversion $VERSION" --define "_binary_payload w${LEVEL}T2.xzdio" \
  --define "changelogdate $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')" --define "use_source_date_epoch_as_buildtime 1" --define "_buildhost symroute" \
  packaging/symroute.spec >"$TOP/log" 2>&1 || { cat "$TOP/log" >&2; exit 1; }
echo "$OUT/symroute-$VERSION-1.$RPMARCH.rpm"
