# The two commands of the README. Both install the Debian packages they need.
.PHONY: demo test build

# Run the default setup: simulated detector, no hardware needed.
demo:
	scripts/install-deps.sh build
	cargo build --release --locked
	target/release/daq-engine setups/demo.yaml

# Run every check and test (what CI runs).
test:
	scripts/test.sh

build:
	scripts/install-deps.sh build
	cargo build --release --locked
