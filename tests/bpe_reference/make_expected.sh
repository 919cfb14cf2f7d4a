#!/bin/sh
# ctest fixture (bpe_reference_setup): installs this npm project (js-tiktoken) into WORK_DIR and
# writes js-tiktoken's GPT-2 ids of every string of CORPUS_JSON to OUT_JSON.
# usage: make_expected.sh WORK_DIR CORPUS_JSON OUT_JSON
# Exit 77 (ctest: skipped) when node/npm are missing or the package cannot be installed; in CI
# (CI=true) that is a failure instead.
set -u
skip() {
  case "${CI:-}" in
    1|true|TRUE|True|yes) echo "FAIL (CI=true, so not skipped): $1"; exit 1 ;;
    *) echo "skipped: $1"; exit 77 ;;
  esac
}
here=$(cd "$(dirname "$0")" && pwd)
work=$1 corpus=$2 out=$3
rm -f "$out"
if ! command -v node > /dev/null 2>&1 || ! command -v npm > /dev/null 2>&1; then
  skip "node and npm are not installed (./setup.sh installs them)"
fi
mkdir -p "$work" || exit 1
cp "$here/package.json" "$here/package-lock.json" "$here/reference.mjs" "$here/bench.mjs" "$work/" || exit 1
cd "$work" || exit 1
if [ ! -f node_modules/js-tiktoken/package.json ] || ! cmp -s package-lock.json node_modules/.dgpt-lock; then
  if ! npm ci --prefer-offline --no-audit --no-fund --loglevel=error > npm.log 2>&1; then
    cat npm.log
    skip "npm ci failed in $work (no access to the npm registry?)"
  fi
  cp package-lock.json node_modules/.dgpt-lock
fi
node reference.mjs < "$corpus" > "$out.tmp" && mv "$out.tmp" "$out" || exit 1
echo "wrote $out ($(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(j.cases.length+" strings, "+j.encoder)' "$out"))"
