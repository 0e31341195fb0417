#!/usr/bin/env bash
# CI: pytest-mtmcs as a pip user gets it. Builds the wheel (`pip wheel --no-deps`, from a clean
# copy of the sources, so no stale build/ output slips in), checks the build printed no setuptools
# "would be ignored" warning and that the wheel holds every module, guardrail config and sample
# file; installs it into a fresh venv outside the checkout (core dependencies from PyPI only: no
# torch, no extras); then, from a scratch folder outside the checkout, runs the README's quick
# start and a guardrail run on the shipped sample:
#   mtmcs sample && pytest --mtmcs --mtmcs-data mtmcs-sample --mtmcs-target baseline:refuse
#     exit 1 expected: baseline:refuse refuses everything, so over-refusal fails (by design)
#   pytest ... --mtmcs-guardrail none,dpp,cot --mtmcs-limit 2
#     exit 1 expected, and the summary names all three stacks (prompt configs read from the wheel)
# Exit 0 when all holds, 1 otherwise. Environment: PYTHON (default python3) makes the venv;
# BUILD_PIP (default .venv/bin/pip) builds the wheel; KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
python=${PYTHON:-python3}
build_pip=${BUILD_PIP:-$src/.venv/bin/pip}
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/mtmcs-wheel-check.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
unset PYTHONPATH PYTEST_ADDOPTS PYTEST_PLUGINS
fail() { echo "wheel check FAILED: $*" >&2; exit 1; }
step() { echo "wheel check [$((SECONDS - start))s] $*"; }

# 1. Build from a copy of what the wheel is made of (pyproject.toml names these folders).
mkdir "$work/src" "$work/dist"
tar -C "$src" --exclude=__pycache__ --exclude='*.pyc' -cf - \
    pyproject.toml README.md pytest_mtmcs guardrails fixtures/mtmcs-sample | tar -C "$work/src" -xf -
step "building the wheel"
"$build_pip" wheel "$work/src" --no-deps --no-cache-dir -q -w "$work/dist" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; fail "pip wheel failed"; }
if grep -q "would be ignored" "$work/build.log"; then
    grep -B2 -A12 "would be ignored" "$work/build.log" >&2
    fail "setuptools ignores a folder: declare it in pyproject.toml [tool.setuptools] packages"
fi
wheel=$(ls "$work"/dist/pytest_mtmcs-*.whl)
step "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# 2. The wheel holds every module of pytest_mtmcs/, py.typed, every guardrail config and the sample.
"$python" - "$wheel" "$work/src" <<'EOF' || fail "the wheel lacks files (see above)"
import sys, zipfile
from pathlib import Path
wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
want = {p.relative_to(src).as_posix() for p in (src / "pytest_mtmcs").rglob("*")
        if p.is_file() and p.suffix in (".py", ".typed")}
want |= {"pytest_mtmcs/guardrail_configs/" + p.relative_to(src / "guardrails").as_posix()
         for p in (src / "guardrails").rglob("*") if p.is_file()}
want |= {"pytest_mtmcs/sample_data/captions.json",
         "pytest_mtmcs/sample_data/data/type_a-00000-of-00001.parquet",
         "pytest_mtmcs/sample_data/data/type_b-00000-of-00001.parquet"}
missing = sorted(want - names)
for name in missing:
    print(f"  missing from the wheel: {name}", file=sys.stderr)
sys.exit(1 if missing else 0)
EOF

# 3. A fresh venv outside the checkout, the wheel and its core dependencies only.
step "installing it into a fresh venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" \
    || fail "pip install of the wheel failed"
bin=$work/venv/bin
mkdir "$work/scratch"
cd "$work/scratch"
where=$("$bin/python" -c "import pytest_mtmcs; print(pytest_mtmcs.__file__)")
case "$where" in
    "$work/venv/"*) ;;
    *) fail "pytest_mtmcs imports from $where, not from the fresh venv" ;;
esac
"$bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    || fail "torch is installed in the fresh venv: a core dependency pulls it in"

# 4. The quick start, as the README gives it to a pip user.
step "quick start: mtmcs sample && pytest --mtmcs ... --mtmcs-target baseline:refuse"
"$bin/mtmcs" sample >"$work/sample.log" 2>&1 || { cat "$work/sample.log" >&2; fail "mtmcs sample failed"; }
rc=0; "$bin/mtmcs" sample >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 4 ] || fail "mtmcs sample into the non-empty mtmcs-sample exited $rc, expected 4"
run() {  # run LOG EXPECTED_RC PYTEST_ARGS...: pytest in the fresh venv; fail unless it exits EXPECTED_RC
    local log=$1 want=$2 got=0
    shift 2
    "$bin/pytest" --mtmcs --mtmcs-data mtmcs-sample -p no:cacheprovider "$@" >"$log" 2>&1 || got=$?
    if [ "$got" -ne "$want" ]; then
        tail -40 "$log" >&2
        fail "pytest $* exited $got, expected $want"
    fi
}
run "$work/quick.log" 1 --mtmcs-target baseline:refuse
grep -q "rollout 96/96 dialogues" "$work/quick.log" || { tail -40 "$work/quick.log" >&2; fail "quick start: not all 96 dialogues ran"; }

# 5. Guardrails from the wheel's own configs (prompts/dpp.txt, prompts/cot.txt).
step "guardrails: --mtmcs-guardrail none,dpp,cot --mtmcs-limit 2"
run "$work/guard.log" 1 -q --mtmcs-target baseline:refuse --mtmcs-guardrail none,dpp,cot --mtmcs-limit 2
for stack in none dpp cot; do  # `mtmcs STACK: ...` under -q, `stack STACK` in the full table
    grep -Eq "^(mtmcs $stack:|stack $stack\$)" "$work/guard.log" \
        || { tail -40 "$work/guard.log" >&2; fail "guardrail run: the summary does not name stack $stack"; }
done
grep -E "^mtmcs (none|dpp|cot):" "$work/guard.log" || true
step "passed"
