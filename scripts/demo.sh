#!/usr/bin/env bash
# Set up, then meter the bundled example events into the embedded ClickHouse (./data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/meterwax run "$@"
