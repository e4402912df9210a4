# Kite: one non-recursive Makefile.  Run ./configure first.
#
#   make               build ./kite (objects under $(B)/)
#   make check         unit tests + guest payload tests (the fast lane)
#   make check-unit    unit tests only (CI also runs them under ASan+UBSan)
#   make check-guest   boots of real Linux kernels (slow: minutes each)
#   make bench         benchmarks; prints figures, asserts nothing
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
	vmm/kvm.c \
	vmm/log.c \
	vmm/memory.c \
	vmm/size.c \
	vmm/term.c \
	vmm/vcpu.c \
	vmm/vm.c

# ---- arch/x86/ ---------------------------------------------------------------
ARCH_SRCS = \
	arch/x86/cpu.c \
	arch/x86/loader.c \
	arch/x86/multiboot.c \
	arch/x86/platform.c \
	arch/x86/serial8250.c

# ---- virtio/ -------------------------------------------------------------------
VIRTIO_SRCS =

LIB_SRCS = $(VMM_SRCS) $(ARCH_SRCS) $(VIRTIO_SRCS)
LIB_OBJS = $(LIB_SRCS:%.c=$(B)/%.o)
LIB = $(B)/libkite.a

all: kite

kite: $(B)/vmm/main.o $(LIB)
	$(CC) $(KITE_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/%.o: %.c build-config.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(KITE_CFLAGS) -c -o $@ $<

build-config.h: config.mk

# ---- unit tests (Check): one binary per suite, tests/unit/test_NAME.c -------
UNIT_TESTS = \
	tests/unit/test_bus \
	tests/unit/test_cli \
	tests/unit/test_memory \
	tests/unit/test_serial8250 \
	tests/unit/test_size

UNIT_BINS = $(UNIT_TESTS:%=$(B)/%)

$(B)/tests/unit/%.o: tests/unit/%.c build-config.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(KITE_CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(B)/tests/unit/test_%: $(B)/tests/unit/test_%.o $(LIB)
	$(CC) $(KITE_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(CHECK_LIBS)

check-unit: $(UNIT_BINS)
	@tests/unit/run-all $(UNIT_BINS)

# ---- guest payloads (freestanding, 32-bit multiboot ELF) --------------------
PAYLOAD_CFLAGS = -m32 -march=i686 -ffreestanding -fno-pic -fno-stack-protector \
		 -fno-asynchronous-unwind-tables -nostdlib -O2 -Wall -Wextra -Werror \
		 -Itests/guest
PAYLOAD_LDFLAGS = -m32 -nostdlib -static -no-pie -Wl,--build-id=none \
		  -Wl,-T,tests/guest/payload.ld
PAYLOAD_NAMES = hello exit-verdict usermode smp
PAYLOADS = $(PAYLOAD_NAMES:%=$(B)/tests/guest/%.elf)
PAYLOAD_COMMON = tests/guest/start.S tests/guest/lib.c

$(B)/tests/guest/%.elf: tests/guest/%.c $(PAYLOAD_COMMON) tests/guest/payload.ld tests/guest/lib.h
	@mkdir -p $(dir $@)
	$(CC) $(PAYLOAD_CFLAGS) $(PAYLOAD_LDFLAGS) -o $@ $(PAYLOAD_COMMON) $<

payloads: $(PAYLOADS)

check-payloads: kite $(PAYLOADS)
	@tests/integration/payloads.sh ./kite $(B)/tests/guest

check: check-unit check-payloads

check-guest: kite
	@tests/integration/check-guest.sh ./kite

EXEC_STATS = $(B)/tests/bench/exec-stats

$(EXEC_STATS): tests/bench/exec-stats.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $<

bench: kite $(PAYLOADS) $(EXEC_STATS)
	@tests/bench/boot-payload.sh ./kite $(B)/tests/guest $(EXEC_STATS)

# ---- install -------------------------------------------------------------------
MANPAGES = man/kite.1 man/kite-run.1

install: kite
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 kite $(DESTDIR)$(PREFIX)/bin/kite
	install -m 0644 $(MANPAGES) $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf build build-san kite

distclean: clean
	rm -f config.mk build-config.h

.PHONY: all check check-unit check-payloads check-guest bench payloads install clean distclean
.SECONDARY:

-include $(LIB_OBJS:.o=.d) $(B)/vmm/main.d $(UNIT_BINS:=.d)
