# The two commands of the README: `make run` and `make test`.
.PHONY: run test setup build bench bench-catalog bench-jobs bench-srt bench-live bench-playout bench-storage demo lint

run: setup
	cargo build --release
	./target/release/antenne validate
	./target/release/antenne serve

test: setup
	cargo test

setup:
	./scripts/setup.sh

build: setup
	cargo build --release

demo: build
	./target/release/antenne doctor
	./target/release/antenne demo -o antenne-demo

bench: build
	cargo bench --bench transcode

bench-catalog: build
	cargo bench --bench catalog

bench-jobs: build
	cargo bench --bench jobs

bench-srt: build
	cargo bench --bench live_srt

bench-live: build
	cargo bench --bench live

bench-playout: build
	cargo bench --bench playout
bench-storage: build
	cargo bench --bench storage

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
