#!/usr/bin/env bash
# make mutate: optional mutation testing with mutmut (not part of make test).
#
# mutmut changes one thing at a time in the modules below (an operator, a constant,
# a string) and runs the tests that cover it; a mutant no test notices "survived".
# It works on a copy of the checkout in .mutmut/work, never on the files you edit.
# The default covers the modules whose tests are fast and need no process kills
# (about a minute for both); docs/guarantees.md says why the consumer is not in it
# and which hand-made mutants pin it instead. Choose others with
#   make mutate MUTATE_MODULES="src/eventlab/x.py" MUTATE_TESTS="tests/test_x.py"
# mutmut installs once into .mutmut/tools, with the versions constraints.txt pins
# for what it shares with the kit (pytest, coverage, click).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
TOOLS="$ROOT/.mutmut/tools"
WORK="$ROOT/.mutmut/work"
MODULES=${MUTATE_MODULES:-"src/eventlab/envelope.py src/eventlab/checker.py"}
TESTS=${MUTATE_TESTS:-"tests/test_envelope.py tests/test_checker.py tests/test_checker_single_fault.py"}

if [ ! -x "$TOOLS/bin/mutmut" ]; then
  "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt --target "$TOOLS" "mutmut==3.8.1"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$WORK"

quote() { printf '"%s", ' "$@"; }
# shellcheck disable=SC2086 - word splitting of the lists is intended
{
  echo
  echo "[tool.mutmut]"
  echo "source_paths = [$(quote $MODULES)]"
  echo "pytest_add_cli_args_test_selection = [$(quote $TESTS)]"
  # the broker config lives in docker/; tests and the root conftest are needed as they are
  echo 'also_copy = ["tests", "conftest.py", "src", "docker"]'
} >> "$WORK/pyproject.toml"

cd "$WORK"
# mutants/src first on the path: the tests import the mutated copy, not the editable install
export PYTHONPATH="$TOOLS:src"
"$TOOLS/bin/mutmut" run --max-children "${MUTATE_JOBS:-1}"
"$TOOLS/bin/mutmut" results
echo "inspect one with: cd $WORK && PYTHONPATH=$TOOLS:src $TOOLS/bin/mutmut show <name>"
