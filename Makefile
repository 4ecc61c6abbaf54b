# The two entry points of the README. Both install their prerequisites first.
.PHONY: demo test setup build check

setup:
	./scripts/setup.sh

build: setup
	cargo build --release --workspace

demo: setup
	./scripts/demo.sh

test: build check
	cargo test --release --workspace

# Static checks of the runtime's structure: no module cycles in its crates.
check:
	./scripts/check-module-cycles runtime/abi/src runtime/core/src runtime/install/src runtime/patch/src \
		runtime/loader/src runtime/policy/src runtime/stats/src
