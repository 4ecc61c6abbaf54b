# The two entry points of the README. Both install their prerequisites first.
.PHONY: demo test setup build check fuzz

setup:
	./scripts/setup.sh

build: setup
	cargo build --release --workspace

demo: setup
	./scripts/demo.sh

# Then every fuzz target for 20 s (libFuzzer; about 2.5 min after a
# 5 min instrumented build): a crash fails the run.
test: build check
	cargo test --release --workspace
	./scripts/fuzz --seconds 20

# Every fuzz target for FUZZ_SECONDS (30) each; fails on a crash.
# Longer: ./scripts/fuzz --seconds 3600 [TARGET...]
fuzz:
	./scripts/fuzz

RUNTIME_CRATES = shunt-abi shunt-core shunt-install shunt-patch shunt-loader shunt-policy shunt-stats shunt-paths shunt-transport shunt-seccomp shunt-userfile shunt-fdpass

# Static checks of the runtime: no module cycles in its crates, and every
# unsafe block and unsafe fn documented (clippy's undocumented_unsafe_blocks
# and missing_safety_doc, and unsafe_op_in_unsafe_fn, as errors); and
# libshunt.so links no parser or decoder (plans are made out of process).
check:
	@if cargo tree -p shunt-preload -e normal --prefix none | grep -E '^(toml|serde|serde_json|object|goblin|iced-x86) '; then \
		echo "check: libshunt.so (shunt-preload) links the crates above; it must only apply plans"; exit 1; fi
	./scripts/check-module-cycles runtime/abi/src runtime/core/src runtime/install/src runtime/patch/src \
		runtime/loader/src runtime/policy/src runtime/stats/src runtime/transport/src runtime/seccomp/src runtime/userfile/src runtime/fdpass/src
	cargo clippy --release $(addprefix -p ,$(RUNTIME_CRATES)) --lib -- -A clippy::all \
		-D clippy::undocumented_unsafe_blocks -D clippy::missing_safety_doc -D unsafe_op_in_unsafe_fn
