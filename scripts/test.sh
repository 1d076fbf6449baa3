#!/usr/bin/env bash
# Set up, then lint, type-check and run the whole test suite: unit tests and
# integration tests against a real Kafka-protocol broker (Tansu), redis-server
# and chDB, which the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test: installing redis-server (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide server; the tests run their own.
  service redis-server stop >/dev/null 2>&1 || true
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  # The usage page is tested in a real headless browser (tests/api/test_portal.py).
  echo "test: installing chromium and chromium-driver (Debian packages)" >&2
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "test: installing promtool (Debian package prometheus)" >&2
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package may start a Prometheus server; the tests only need promtool.
  service prometheus stop >/dev/null 2>&1 || true
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
# The native core: formatted, clippy-clean, its own unit tests (the Python tests
# hold it to the Python operators).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
  cargo fmt --manifest-path native/Cargo.toml --check
  cargo clippy --manifest-path native/Cargo.toml --all-targets --locked -q -- -D warnings
else
  echo "test: cargo fmt/clippy not installed (rustup components); skipping the Rust lint" >&2
fi
cargo test --manifest-path native/Cargo.toml --locked -q
# The slowest tests are listed: the suite is kept under ~10 minutes.
exec .venv/bin/pytest --durations=15 "$@"
