# SPDX-License-Identifier: GPL-2.0-or-later
# Thin wrapper over Meson, in the spirit of QEMU's configure && make.
BUILD ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?=

.PHONY: all deps run check check-quick install clean fuzz

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dvsockmon=disabled -Dwireshark-plugin=disabled $(MESON_OPTS)

deps:
	bash scripts/deps.sh

# The main job on the built-in default: the virt machine with its default payload.
run: deps all
	bash scripts/run-default.sh $(BUILD)

# Every suite, then the unit and functional suites again under ASan+UBSan.
# A skipped test in a required suite fails the run (QS_REQUIRE_ALL=1).
check: deps all $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	QS_REQUIRE_ALL=1 bash scripts/check.sh $(BUILD) $(ASAN_BUILD)

# Only the normal build, skips allowed: for iterating by hand.
check-quick: all
	meson test -C $(BUILD) --print-errorlogs

install: all
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# One fuzzing campaign on an image format (modules/block-fuzz): niced, findings in
# /tmp/qs-fuzz-FORMAT-ENGINE.  make fuzz FORMAT=vmdk SECONDS=600 [ENGINE=libfuzzer|afl]
FORMAT ?= qcow2
SECONDS ?= 600
ENGINE ?= libfuzzer
fuzz: deps
	bash modules/block-fuzz/scripts/fuzz.sh $(FORMAT) $(SECONDS) $(ENGINE)
