#!/usr/bin/env bash
# Run every chapter's self-checks with several course seeds (default 0 1 2 3):
#   benchmarks/seeds.sh [SEED ...]
# Each seed runs nbval over every notebook with SCALING_COURSE_SEED set, so every training
# helper (model initialisation, batch order, sweep designs) uses that seed. Runs are cached
# per seed in the usual run cache. A seed is one full notebook run: about as long as
# `make nbval` with a cold cache. Prints one line per seed and exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then seeds=("$@"); else seeds=(0 1 2 3); fi
failed=()
for seed in "${seeds[@]}"; do
    if ! [[ "$seed" =~ ^[0-9]+$ ]]; then
        echo "seeds must be integers >= 0, got '$seed'" >&2
        exit 2
    fi
    echo "== SCALING_COURSE_SEED=$seed"
    if SCALING_COURSE_SEED="$seed" .venv/bin/pytest --nbval-lax -q chapters/*.ipynb; then
        echo "seed $seed: pass"
    else
        echo "seed $seed: FAIL"
        failed+=("$seed")
    fi
done
echo "seeds failing: ${#failed[@]}/${#seeds[@]} ${failed[*]:-}"
[ ${#failed[@]} -eq 0 ]
