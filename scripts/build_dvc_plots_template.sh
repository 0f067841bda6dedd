#!/usr/bin/env bash
# Rebuild .dvc/plots_offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.
#
# DVC's own page loads those three scripts from cdn.jsdelivr.net, so `dvc plots show` is a blank
# page offline. Their minified builds are ~830 KB together, so the built template is committed and
# this script is only needed to change versions (it needs npm and the npm registry).
# .dvc/config points DVC at the template: [plots] html_template = plots_offline.html
set -euo pipefail
cd "$(dirname "$0")/.."

# The majors DVC's renderer targets (dvc-render writes Vega-Lite 5 specs for vega-embed 6).
VEGA=${VEGA:-5.33.1}
VEGA_LITE=${VEGA_LITE:-5.23.0}
VEGA_EMBED=${VEGA_EMBED:-6.29.0}
OUT=.dvc/plots_offline.html

command -v npm >/dev/null || { echo "build_dvc_plots_template: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for pkg in "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED"; do
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
done
for tgz in "$work"/*.tgz; do
  name=$(basename "$tgz" .tgz)
  mkdir -p "$work/$name" && tar xzf "$tgz" -C "$work/$name"
done

script() {  # inline one build; a literal </script would end the tag early
  if grep -qi '</script' "$1"; then echo "build_dvc_plots_template: $1 contains </script" >&2; exit 1; fi
  printf '<script>\n'; cat "$1"; printf '\n</script>\n'
}

tmp="$OUT.tmp.$$"
{
  cat <<EOF
<!DOCTYPE html>
<html>
<head>
{refresh_tag}
<meta charset="utf-8">
<title>GLEAM: DVC plots</title>
<!-- vega $VEGA, vega-lite $VEGA_LITE, vega-embed $VEGA_EMBED (each BSD-3-Clause, (c) the UW Interactive
     Data Lab), inlined so this page renders offline. Rebuild: scripts/build_dvc_plots_template.sh -->
<style>body{font:14px system-ui,sans-serif;margin:1em} table{border-spacing:15px}</style>
EOF
  script "$work/vega-$VEGA/package/build/vega.min.js"
  script "$work/vega-lite-$VEGA_LITE/package/build/vega-lite.min.js"
  script "$work/vega-embed-$VEGA_EMBED/package/build/vega-embed.min.js"
  cat <<'EOF'
</head>
<body>
{plot_divs}
</body>
</html>
EOF
} > "$tmp"
mv "$tmp" "$OUT"
echo "build_dvc_plots_template: wrote $OUT ($(du -k "$OUT" | cut -f1) KB)"
