# The two commands of the README: `make run` and `make test`.
.PHONY: run test setup build bench lint

run: setup
	cargo build --release
	./target/release/antenne doctor
	./target/release/antenne demo -o antenne-demo

test: setup
	cargo test

setup:
	./scripts/setup.sh

build: setup
	cargo build --release

bench: build
	cargo bench --bench transcode

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
