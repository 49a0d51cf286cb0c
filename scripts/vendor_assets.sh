#!/usr/bin/env bash
# Vendor the web page's and the API docs' JavaScript and CSS from the npm registry, at pinned
# versions, into service/static/vendor/: the page (GET /), /docs and /redoc then load nothing
# from outside the service. The files are committed; run this only to change a version (edit
# it below), then commit what it wrote, SHA256SUMS included. Needs npm; nothing is installed:
# `npm pack` fetches each package's tarball and runs none of its scripts.
set -euo pipefail

CHART_JS=4.6.1         # the web page's charts (MIT)
SWAGGER_UI_DIST=5.35.0 # /docs (Apache-2.0)
REDOC=2.5.4            # /redoc (MIT); FastAPI's default is redoc@2, and 3.x adds telemetry

root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/service/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# unpack NAME VERSION: the package's tarball, unpacked under $work/NAME.
unpack() {
    local tarball
    tarball="$(cd "$work" && npm pack --silent "$1@$2")"
    mkdir -p "$work/$1"
    tar -xzf "$work/$tarball" -C "$work/$1" --strip-components=1
}

unpack chart.js "$CHART_JS"
unpack swagger-ui-dist "$SWAGGER_UI_DIST"
unpack redoc "$REDOC"

rm -rf "$vendor/chart.js" "$vendor/swagger-ui" "$vendor/redoc"
mkdir -p "$vendor/chart.js" "$vendor/swagger-ui" "$vendor/redoc"
cp "$work/chart.js/dist/chart.umd.min.js" "$work/chart.js/LICENSE.md" "$vendor/chart.js/"
cp "$work/swagger-ui-dist/"{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css} \
    "$work/swagger-ui-dist/"{LICENSE,NOTICE} "$vendor/swagger-ui/"
cp "$work/redoc/bundles/"{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} \
    "$work/redoc/LICENSE" "$vendor/redoc/"

# The versions as the packages themselves say them, for service/routes/page.py and the tests.
cat > "$vendor/versions.json" <<JSON
{
  "chart.js": "$(node -p "require('$work/chart.js/package.json').version")",
  "swagger-ui-dist": "$(node -p "require('$work/swagger-ui-dist/package.json').version")",
  "redoc": "$(node -p "require('$work/redoc/package.json').version")"
}
JSON
(cd "$vendor" && find chart.js swagger-ui redoc versions.json -type f | LC_ALL=C sort |
    xargs sha256sum > SHA256SUMS)
du -sh "$vendor"
