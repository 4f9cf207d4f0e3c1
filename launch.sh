#!/usr/bin/env bash
# The one entry point of lexicon.
#   ./launch.sh <experiment> [--config.key=value ...] [--workdir DIR]
#   ./launch.sh test [pytest args]
#   ./launch.sh all
#   ./launch.sh --processes N [--devices K] <experiment> ...
#   ./launch.sh --help
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"

usage() {
  cat <<'TXT'
usage: ./launch.sh <experiment> [--config.key=value ...] [--workdir DIR]
       ./launch.sh test [pytest args]        run the test suite (slow tests: -m slow)
       ./launch.sh all                       run every experiment, write reports/index.md
       ./launch.sh --processes N [--devices K] <experiment> ...
                                             N JAX processes over loopback, K CPU devices each
       ./launch.sh <experiment> --help       list the experiment's flags and config keys

experiments:
TXT
  python3 - <<'PYTXT'
import ast, pathlib
for path in sorted(pathlib.Path("experiments").glob("[a-z]*.py")):
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    print(f"  {path.stem:<16} {doc.strip().splitlines()[0] if doc else ''}")
PYTXT
}

# Creates .venv and installs the project the first time, and again whenever
# pyproject.toml changes.
setup() {
  local stamp="$ROOT/.venv/.installed"
  if [ ! -x "$PY" ] || [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "launch.sh: installing lexicon into .venv (first use only)..." >&2
    python3 -m venv "$ROOT/.venv"
    "$PY" -m pip install --quiet --upgrade pip >&2
    "$PY" -m pip install --quiet -e "$ROOT[test]" >&2
    touch "$stamp"
  fi
}

experiment_exists() {
  [[ "$1" =~ ^[a-z_][a-z0-9_]*$ ]] && [ -f "experiments/$1.py" ]
}

run_experiment() {
  local name=$1; shift
  if ! experiment_exists "$name"; then
    echo "launch.sh: unknown experiment '$name'; run ./launch.sh --help for the list" >&2
    exit 2
  fi
  exec "$PY" -m "experiments.$name" "$@"
}

run_processes() {
  local n=$1 devices=$2 name=$3; shift 3
  experiment_exists "$name" || { echo "launch.sh: unknown experiment '$name'" >&2; exit 2; }
  local port=$(( 20000 + RANDOM % 20000 ))
  export LEXICON_COORDINATOR="127.0.0.1:$port" LEXICON_NUM_PROCESSES="$n"
  export LEXICON_RUN_STAMP="${LEXICON_RUN_STAMP:-$(date +%Y%m%d-%H%M%S)}"
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"
  local logs; logs=$(mktemp -d)
  local pids=()
  for ((i = 0; i < n; i++)); do
    if [ "$i" -eq 0 ]; then
      LEXICON_PROCESS_ID=$i "$PY" -m "experiments.$name" "$@" &
    else
      LEXICON_PROCESS_ID=$i "$PY" -m "experiments.$name" "$@" >"$logs/$i.log" 2>&1 &
    fi
    pids+=($!)
  done
  local status=0
  for ((i = 0; i < n; i++)); do
    if ! wait "${pids[$i]}"; then
      status=1
      if [ "$i" -ne 0 ]; then echo "--- process $i failed; its log:" >&2; cat "$logs/$i.log" >&2; fi
    fi
  done
  rm -rf "$logs"
  exit $status
}

[ $# -gt 0 ] || { usage; exit 2; }
case "$1" in
  -h|--help|help)
    usage ;;
  test)
    shift; setup
    exec "$PY" -m pytest -n 2 -m "not slow" "$@" ;;
  all)
    shift; setup
    mkdir -p reports
    failed=()
    for path in experiments/[a-z]*.py; do
      name=$(basename "$path" .py)
      echo "=== $name" >&2
      rm -rf "reports/$name"  # a report is regenerated from scratch on every run
      "$PY" -m "experiments.$name" --workdir "reports/$name" "$@" || failed+=("$name")
    done
    "$PY" -m lexicon.report --index reports
    if [ ${#failed[@]} -gt 0 ]; then echo "launch.sh: failed: ${failed[*]}" >&2; exit 1; fi ;;
  --processes)
    [ $# -ge 3 ] || { usage; exit 2; }
    n=$2; shift 2
    devices=1
    if [ "${1:-}" = "--devices" ]; then devices=$2; shift 2; fi
    [[ "$n" =~ ^[1-9][0-9]*$ && "$devices" =~ ^[1-9][0-9]*$ ]] \
      || { echo "launch.sh: --processes and --devices take positive integers" >&2; exit 2; }
    setup
    run_processes "$n" "$devices" "$@" ;;
  -*)
    echo "launch.sh: unknown option '$1'; run ./launch.sh --help" >&2; exit 2 ;;
  *)
    setup
    run_experiment "$@" ;;
esac
