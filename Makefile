# The two entry points of the README. Both install their prerequisites first.
.PHONY: demo test setup build

setup:
	./scripts/setup.sh

build: setup
	cargo build --release --workspace

demo: setup
	./scripts/demo.sh

test: build
	cargo test --release --workspace
