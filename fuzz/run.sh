#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (docs/fuzzing.md).
#
#   fuzz/run.sh              # each target for 30 seconds
#   fuzz/run.sh 300          # each target for 5 minutes
#   fuzz/run.sh 60 form nin  # only these targets
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz with `cargo install cargo-fuzz` when it is missing. The corpus
# grows in fuzz/corpus/<target>/ (kept between runs, not committed); a
# crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: fuzz/run.sh [SECONDS] [TARGET…]" >&2
  exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz)"
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building the fuzz targets (nightly, release, AddressSanitizer)"
cargo +nightly fuzz build -O

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  # Seeds committed beside the targets start the corpus.
  if [ -d "seeds/$target" ]; then
    cp -n "seeds/$target"/* "corpus/$target"/ 2>/dev/null || true
  fi
  echo "== $target for ${seconds}s"
  if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 -timeout=10 -rss_limit_mb=2048; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with cargo +nightly fuzz run TARGET ARTIFACT)" >&2
  exit 1
fi
echo "== no crash in ${targets[*]} (${seconds}s each)"
