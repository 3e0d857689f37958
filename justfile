# Lily task runner. `cargo install just --locked` if `just` is missing.

# List recipes.
default:
    @just --list

# The README's test command: every test of the workspace and the guests.
test:
    cargo test --workspace --locked
    cargo test --manifest-path guests/Cargo.toml --workspace --locked

# fmt check + clippy (warnings denied) + tests.
quality-check:
    cargo fmt --all --check
    cargo fmt --manifest-path guests/Cargo.toml --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    just test

# The WIT / envelope / error-code conformance tests.
contract-conformance:
    cargo test -p lily --locked --test conformance

# Pre-merge operational checks: run the example jobs, verify artifacts,
# run one invalid job twice and compare code + message.
ops-check:
    cargo build -p lily --locked
    bash scripts/ops-check.sh

# Benchmarks (print tables; figures go to docs/performance.md).
bench:
    cargo bench -p lily --locked --profile dev

# Issue 19's targets (every row of its table) with the release profile they
# are for (a release build: ~20 min on 2 cores the first time).
bench-release:
    cargo bench -p lily --locked --bench targets

# Run the demo council (the README's main-job command).
demo:
    cargo run -p lily --locked -- demo

# A real small model on 127.0.0.1 (PyPI only; ~12 min to build once) and the
# example `review` job against it, then replayed offline (docs/llm.md).
llm-smoke:
    bash scripts/llm-smoke.sh
