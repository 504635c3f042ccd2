#!/usr/bin/env bash
# Breaking-change gate for contracts.  Exit 0 = no breaking change, 1 = breaking change(s), 2 = tool error.
#   ./contract-diff.sh openapi  OLD.json NEW.json     (OpenAPI 3.0/3.1, JSON or YAML)
#   ./contract-diff.sh asyncapi OLD.yaml NEW.yaml     (AsyncAPI 3.x; messages projected to OpenAPI responses)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export OPTIC_TELEMETRY_LEVEL=off
kind="$1" old="$(realpath "$2")" new="$(realpath "$3")"
case "$kind" in
  openapi) a="$old" b="$new" ;;
  asyncapi)
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    node "$here/asyncapi-to-openapi.mjs" "$old" > "$tmp/old.json" || exit 2
    node "$here/asyncapi-to-openapi.mjs" "$new" > "$tmp/new.json" || exit 2
    a="$tmp/old.json" b="$tmp/new.json" ;;
  *) echo "usage: $0 openapi|asyncapi OLD NEW" >&2; exit 2 ;;
esac
cd "$here"  # the standard names its local rule relative to this folder
out="$("$here/node_modules/.bin/optic" diff "$a" "$b" --check --standard "$here/optic-standard.yml" 2>&1)"; rc=$?
printf '%s\n' "$out"
# optic only warns (exit 0) when a ruleset fails to load or a spec fails to parse: treat that as a tool error
if grep -qE 'Constructing ruleset .* failed|does not exist|Error:|is not a valid' <<<"$out"; then exit 2; fi
[ "$rc" -eq 0 ] && exit 0
grep -q 'This is a breaking change' <<<"$out" && exit 1
exit 2
