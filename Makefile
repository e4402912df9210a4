# Kite: one non-recursive Makefile.  Run ./configure first.
#
#   make               build ./kite (objects under $(B)/)
#   make check         unit tests + guest payload tests (the fast lane)
#   make check-unit    unit tests only (CI also runs them under ASan+UBSan)
#   make check-tsan    unit tests and payload boots under ThreadSanitizer
#   make fuzz          libFuzzer targets (clang), FUZZ_SECONDS each
#   make check-guest   boots of real Linux kernels (slow: minutes each): a
#                      stock Debian kernel, and the test kernel with the
#                      in-kernel agent once per virtio transport
#   make bench         benchmarks; prints figures, asserts nothing
#   make bench-linux   time to /init of the stock kernels (10+ min each on PVM)
#   make initramfs     an initramfs for the newest installed stock kernel
#   make install       binary and man pages under $(PREFIX)

ifeq ($(wildcard config.mk),)
$(error config.mk missing: run ./configure first)
endif
include config.mk

# Sanitizer builds live in their own tree so both can coexist.
ifeq ($(SANITIZE),yes)
B ?= build-san
else
B ?= build
endif

CFLAGS ?= -O2 -g
KITE_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -I. -pthread \
	      $(DEP_CFLAGS) $(SAN_FLAGS) -MMD -MP
KITE_LDFLAGS = -pthread -Wl,--as-needed -Wl,-O1 $(SAN_FLAGS)

# ---- vmm/: the arch-neutral machine ----------------------------------------
VMM_SRCS = \
	vmm/bus.c \
	vmm/cli.c \
	vmm/console_watch.c \
	vmm/devices.c \
	vmm/disk/disk.c \
	vmm/disk/qcow2.c \
	vmm/disk/raw.c \
	vmm/irq.c \
	vmm/kvm.c \
	vmm/log.c \
	vmm/memory.c \
	vmm/pci.c \
	vmm/size.c \
	vmm/term.c \
	vmm/vcpu.c \
	vmm/vm.c

# ---- arch/x86/ ---------------------------------------------------------------
ARCH_SRCS = \
	arch/x86/acpi.c \
	arch/x86/aml.c \
	arch/x86/bios.c \
	arch/x86/cpu.c \
	arch/x86/e820.c \
	arch/x86/elf.c \
	arch/x86/emulate.c \
	arch/x86/kernel_unpack.c \
	arch/x86/ksyms.c \
	arch/x86/linux.c \
	arch/x86/loader.c \
	arch/x86/mptable.c \
	arch/x86/multiboot.c \
	arch/x86/platform.c \
	arch/x86/profile.c \
	arch/x86/pvm.c \
	arch/x86/rtc.c \
	arch/x86/pm.c \
	arch/x86/serial8250.c

# ---- virtio/ -------------------------------------------------------------------
VIRTIO_SRCS = \
	virtio/blk.c \
	virtio/ccw.c \
	virtio/console.c \
	virtio/core.c \
	virtio/mmio.c \
	virtio/pci.c \
	virtio/rng.c \
	virtio/virtq.c

LIB_SRCS = $(VMM_SRCS) $(ARCH_SRCS) $(VIRTIO_SRCS)
LIB_OBJS = $(LIB_SRCS:%.c=$(B)/%.o) $(B)/arch/x86/bios_image.o
LIB = $(B)/libkite.a

all: kite

# ./kite, and the same binary inside the build tree so that a sanitizer
# tree has its own (build-san/kite, build-tsan/kite) beside ./kite.
kite $(B)/kite: $(B)/vmm/main.o $(LIB)
	$(CC) $(KITE_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/%.o: %.c build-config.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(KITE_CFLAGS) -c -o $@ $<

# build-config.h is written by ./configure (only when its contents change).
build-config.h:
	@echo "build-config.h missing: run ./configure" >&2; exit 1

# ---- bios/: Kite's BIOS, a flat real-mode image linked into kite -----------
OBJCOPY ?= objcopy
BIOS_FLAGS = -m32 -I. -Wa,--fatal-warnings -nostdlib -static -no-pie \
	     -Wl,--build-id=none -Wl,-T,bios/bios.ld

$(B)/bios/bios.elf: bios/bios.S bios/layout.h bios/bios.ld
	@mkdir -p $(dir $@)
	$(CC) $(BIOS_FLAGS) -o $@ bios/bios.S

$(B)/bios/%.bin: $(B)/bios/%.elf
	$(OBJCOPY) -O binary $< $@

$(B)/arch/x86/bios_image.o: arch/x86/bios_image.S $(B)/bios/bios.bin
	@mkdir -p $(dir $@)
	$(CC) -c -Wa,-I$(B)/bios -o $@ arch/x86/bios_image.S

# ---- unit tests (Check): one binary per suite, tests/unit/test_NAME.c -------
UNIT_TESTS = \
	tests/unit/test_acpi \
	tests/unit/test_bios \
	tests/unit/test_bus \
	tests/unit/test_cli \
	tests/unit/test_disk \
	tests/unit/test_e820 \
	tests/unit/test_console_watch \
	tests/unit/test_emulate \
	tests/unit/test_ksyms \
	tests/unit/test_linux_loader \
	tests/unit/test_memory \
	tests/unit/test_multiboot \
	tests/unit/test_pci \
	tests/unit/test_platform \
	tests/unit/test_pvm \
	tests/unit/test_qcow2 \
	tests/unit/test_qcow2_integrity \
	tests/unit/test_term \
	tests/unit/test_serial8250 \
	tests/unit/test_rtc \
	tests/unit/test_size \
	tests/unit/test_virtio_blk \
	tests/unit/test_virtio_ccw \
	tests/unit/test_virtio_console \
	tests/unit/test_virtio_core \
	tests/unit/test_virtio_mmio \
	tests/unit/test_virtio_packed \
	tests/unit/test_virtio_pci \
	tests/unit/test_virtio_rng \
	tests/unit/test_virtio_split

UNIT_BINS = $(UNIT_TESTS:%=$(B)/%)

$(B)/tests/unit/%.o: tests/unit/%.c build-config.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(KITE_CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

# Helpers shared by test suites (not part of kite itself).
UNIT_HELPERS = $(B)/tests/unit/virtio_test_driver.o $(B)/tests/unit/fake_pci_platform.o

$(B)/tests/unit/test_%: $(B)/tests/unit/test_%.o $(UNIT_HELPERS) $(LIB)
	$(CC) $(KITE_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(CHECK_LIBS)

check-unit: $(UNIT_BINS)
	@tests/unit/run-all $(UNIT_BINS)

# ---- guest payloads (freestanding, 32-bit multiboot ELF) --------------------
PAYLOAD_CFLAGS = -m32 -march=i686 -ffreestanding -fno-pic -fno-stack-protector \
		 -fno-asynchronous-unwind-tables -nostdlib -O2 -Wall -Wextra -Werror \
		 -Itests/guest
PAYLOAD_LDFLAGS = -m32 -nostdlib -static -no-pie -Wl,--build-id=none \
		  -Wl,-T,tests/guest/payload.ld
PAYLOAD_NAMES = hello exit-verdict usermode smp pvm-quirks reset serial-echo
PAYLOADS = $(PAYLOAD_NAMES:%=$(B)/tests/guest/%.elf)
PAYLOAD_COMMON = tests/guest/start.S tests/guest/lib.c

$(B)/tests/guest/%.elf: tests/guest/%.c $(PAYLOAD_COMMON) tests/guest/payload.ld tests/guest/lib.h
	@mkdir -p $(dir $@)
	$(CC) $(PAYLOAD_CFLAGS) $(PAYLOAD_LDFLAGS) -o $@ $(PAYLOAD_COMMON) $<

payloads: $(PAYLOADS)

# Real-mode payloads for --boot bios: flat synthetic bzImages.
$(B)/tests/guest/bios-%.elf: tests/guest/bios-%.S tests/guest/realmode.ld
	@mkdir -p $(dir $@)
	$(CC) -m32 -Wa,--fatal-warnings -nostdlib -static -no-pie \
		-Wl,--build-id=none -Wl,-T,tests/guest/realmode.ld -o $@ $<

$(B)/tests/guest/bios-%.bin: $(B)/tests/guest/bios-%.elf
	$(OBJCOPY) -O binary $< $@

check-bios: kite $(B)/tests/guest/bios-services.bin
	@tests/integration/bios.sh ./kite $(B)/tests/guest

.PHONY: check-bios

check-payloads: kite $(PAYLOADS)
	@tests/integration/payloads.sh ./kite $(B)/tests/guest

# ThreadSanitizer: the unit tests, and the payload boots with a kite built
# the same way, in their own tree (build-tsan/); a race report fails the
# test (TSan exits 66).  -Wno-tsan: TSan does not model the fences that
# order ring memory against the index updates (virtq.c, the test driver);
# the indices themselves are atomics it does see.
TSAN_VARS = B=build-tsan SANITIZE=yes SAN_FLAGS="-fsanitize=thread -Wno-tsan"

check-tsan:
	@TSAN_OPTIONS="halt_on_error=1" $(MAKE) --no-print-directory \
		$(TSAN_VARS) check-unit build-tsan/kite payloads
	@TSAN_OPTIONS="halt_on_error=1" tests/integration/payloads.sh \
		build-tsan/kite build-tsan/tests/guest

check: check-unit check-payloads

check-guest: kite
	@tests/integration/check-guest.sh ./kite

EXEC_STATS = $(B)/tests/bench/exec-stats

$(EXEC_STATS): tests/bench/exec-stats.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $<

bench: kite $(PAYLOADS) $(EXEC_STATS) $(B)/tests/bench/blk-iops
	@tests/bench/boot-payload.sh ./kite $(B)/tests/guest $(EXEC_STATS)
	@$(BLK_IOPS)
	@echo "blk-iops: the same, page cache, without busy-polling (poll=0)"
	@$(BLK_IOPS) -b -P 0
	@echo "blk-iops: the same, with a driver that sleeps at once (no halt polling)"
	@$(BLK_IOPS) -H 0
	@echo "blk-iops: the device on a qcow2 copy of the file"
	@$(BLK_IOPS) -Q
	@tests/bench/agent-boot.sh

# ---- install -------------------------------------------------------------------
MANPAGES = man/kite.1 man/kite-run.1

install: kite
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 kite $(DESTDIR)$(PREFIX)/bin/kite
	install -m 0644 $(MANPAGES) $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build build-san build-tsan build-fuzz kite

distclean: clean
	rm -f config.mk build-config.h

.PHONY: all check check-unit check-payloads check-tsan check-guest bench payloads install clean distclean
.SECONDARY:

-include $(LIB_OBJS:.o=.d) $(B)/vmm/main.d $(UNIT_BINS:=.d) $(UNIT_HELPERS:.o=.d) $(B)/tests/bench/blk-iops.d

# ---- the test kernel with Kite's in-kernel agent (tests/guest-kernel/) -------
# Cached by tools/build-guest-kernel itself; output under build/guest-kernel/.
guest-kernel:
	@tools/build-guest-kernel

.PHONY: guest-kernel

# virtio 1.2 device requirements, the unit test for each, and its result.
conformance: $(filter %/test_virtio_core %/test_virtio_split %/test_virtio_packed %/test_virtio_pci %/test_virtio_mmio %/test_virtio_ccw %/test_virtio_rng %/test_virtio_console %/test_virtio_blk %/test_pci,$(UNIT_BINS))
	@tools/conformance tests/unit/conformance.tsv $(B)

# ---- stock Linux kernels: initramfs and boot benchmark --------------------------
# An initramfs for the newest installed cloud kernel (else the generic one);
# INITRAMFS_KVER=VERSION picks another.  The init gives a shell.  Also
# links $(B)/vmlinuz to that kernel and $(B)/initramfs.img to the image,
# for README's `kite run -k build/vmlinuz -i build/initramfs.img`.
INITRAMFS_KVER ?= $(shell ls -1 /boot/vmlinuz-*-cloud-amd64 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | sed 's|.*/vmlinuz-||' | awk '/-cloud-/ { c = $$0 } { g = $$0 } END { print (c != "" ? c : g) }')

# On a PVM host the guest would inflate a gzip image in emulated kernel mode
# (minutes): the archive is left uncompressed there.
INITRAMFS_COMPRESS ?= $(if $(wildcard /sys/module/kvm_pvm),none,gzip)

initramfs:
	@test -n "$(INITRAMFS_KVER)" || { echo "no kernel in /boot (apt-get install linux-image-cloud-amd64) or set INITRAMFS_KVER" >&2; exit 1; }
	tools/mkinitramfs -k $(INITRAMFS_KVER) -c $(INITRAMFS_COMPRESS) -o $(B)/initramfs-$(INITRAMFS_KVER).img
	ln -sfn initramfs-$(INITRAMFS_KVER).img $(B)/initramfs.img
	ln -sfn /boot/vmlinuz-$(INITRAMFS_KVER) $(B)/vmlinuz

# Time to /init of both stock kernels; 10+ minutes per boot on a PVM host.
bench-linux: kite
	@tests/bench/boot-linux.sh ./kite

.PHONY: initramfs bench-linux

# virtio-blk 4 KiB random IOPS through the device path vs. the host file
# (tests/bench/blk-iops.c); BLK_IOPS_ARGS e.g. "-d -t 5 -f /dev/nvme0n1".
BLK_IOPS = $(B)/tests/bench/blk-iops

$(BLK_IOPS): $(B)/tests/bench/blk-iops.o $(B)/tests/unit/virtio_test_driver.o $(LIB)
	$(CC) $(KITE_LDFLAGS) -o $@ $^ $(DEP_LIBS)

bench-blk: $(BLK_IOPS)
	@$(BLK_IOPS) $(BLK_IOPS_ARGS)

.PHONY: bench-blk

# ---- libFuzzer targets (tests/fuzz/, clang) -----------------------------------
# `make fuzz` builds each target with -fsanitize=fuzzer,address,undefined in
# its own tree (build-fuzz/: the kite sources with fuzzer-no-link, through a
# sub-make with CC=clang, so config.mk stays as ./configure wrote it) and
# runs it for FUZZ_SECONDS from a scratch copy of its seed corpus
# (tests/fuzz/run); a crash, leak, timeout, memory blow-up or broken
# invariant fails the make.  `make fuzz-build` only builds.
FUZZ_TARGETS = fuzz_qcow2 fuzz_loader fuzz_virtq
FUZZ_SECONDS ?= 60
FUZZ_TREE = build-fuzz
# Two clang 14 warnings gcc does not give are off in this tree: IOV_WALK's
# done_ in disk.c's iov_memset counts as set but unused, and a designated
# initializer (struct x = { .a = 1 }) as missing the other fields.
FUZZ_WNO = -Wno-unused-but-set-variable -Wno-missing-field-initializers
FUZZ_VARS = CC=clang B=$(FUZZ_TREE) CFLAGS="-O1 -g" \
	    SAN_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer $(FUZZ_WNO)"

$(B)/tests/fuzz/fuzz_%: $(B)/tests/fuzz/fuzz_%.o $(LIB)
	$(CC) $(KITE_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(DEP_LIBS)

fuzz-build:
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' | \
		clang -fsanitize=fuzzer,address,undefined -x c -o /dev/null - 2>/dev/null || \
		{ echo "make fuzz: clang with libFuzzer missing (Debian: clang libclang-rt-14-dev; tools/install-deps)" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_VARS) $(FUZZ_TARGETS:%=$(FUZZ_TREE)/tests/fuzz/%)

fuzz: fuzz-build
	@tests/fuzz/run $(FUZZ_SECONDS) $(FUZZ_TREE) $(FUZZ_TARGETS)

.PHONY: fuzz fuzz-build

-include $(FUZZ_TARGETS:%=$(B)/tests/fuzz/%.d)
