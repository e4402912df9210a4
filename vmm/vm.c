/* VM lifecycle: build from a vm_config, run the vCPUs, wait for the end.
 *
 * The main thread is the VM's event loop: it polls stdin (feeding COM1),
 * a signalfd (SIGINT/SIGTERM/SIGHUP) and an eventfd that vm_request_stop()
 * writes, so any thread can end the VM without racing the others. */
#include "vmm/vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/cpu.h"
#include "arch/x86/ksyms.h"
#include "arch/x86/loader.h"
#include "arch/x86/mptable.h"
#include "arch/x86/platform.h"
#include "arch/x86/pm.h"
#include "arch/x86/profile.h"
#include "arch/x86/pvm.h"
#include "arch/x86/rtc.h"
#include "arch/x86/serial8250.h"
#include "virtio/console.h"
#include "vmm/console_watch.h"
#include "vmm/devices.h"
#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/term.h"
#include "vmm/vcpu.h"

/* KVM needs three pages for the TSS and one for the identity map on Intel;
 * put them just below the BIOS area at the top of the 32-bit space. */
#define KVM_TSS_GPA          0xFFFBD000ULL
#define KVM_IDENTITY_MAP_GPA 0xFFFBC000ULL

static const struct {
	uint16_t port;
	unsigned irq;
} com_ports[VM_CONFIG_MAX_SERIAL] = {
	{ 0x3F8, 4 }, { 0x2F8, 3 }, { 0x3E8, 4 }, { 0x2E8, 3 },
};

struct serial_port {
	struct serial8250 uart;
	struct vm *vm;
	unsigned irq;
	int out_fd; /* -1: output discarded */
	struct console_watch watch; /* COM1 only: kernel messages kite acts on */
	bool watched;
};

struct exit_counts {
	unsigned long pio, mmio, emulated;
};

static struct exit_counts exit_counts(const struct vm *vm)
{
	struct exit_counts c = { 0, 0, 0 };

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		c.pio += atomic_load(&vm->vcpus[i]->nr_pio_exits);
		c.mmio += atomic_load(&vm->vcpus[i]->nr_mmio_exits);
		c.emulated += atomic_load(&vm->vcpus[i]->nr_emulated);
	}
	return c;
}

/* User + system CPU time of the whole process: on a busy host the
 * figure that wall time hides. */
static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void console_event(struct vm *vm, enum console_event ev,
			  const char *line)
{
	struct exit_counts c;
	char msg[640];

	switch (ev) {
	case CONSOLE_EVENT_INIT_STARTED:
		vm->reached_init = true;
		c = exit_counts(vm);
		/* The exits on the way, for `make bench-linux`. */
		kite_info("guest reached /init after %.3f s (cpu %.1f s; exits so "
			  "far: pio=%lu mmio=%lu emulated=%lu)", kite_uptime(),
			  cpu_seconds(), c.pio, c.mmio, c.emulated);
		break;
	case CONSOLE_EVENT_INIT_KILLED:
		vm->panic_pending = true;
		if (vm->pvm_profile)
			snprintf(msg, sizeof(msg),
				 "the guest's init died (%s): on this PVM host guest user "
				 "mode cannot make system calls (a syscall from user mode "
				 "lands at LSTAR without entering kernel mode), so no Linux "
				 "user space can run here; the kernel booted as far as "
				 "/init%s", line,
				 vm->reached_init ? "" : " (no 'Run /init' line was seen)");
		else
			snprintf(msg, sizeof(msg), "the guest's init died: %s", line);
		kite_error("%s", msg);
		break;
	case CONSOLE_EVENT_PANIC:
		vm->panic_pending = true;
		kite_error("guest kernel panic: %s", line);
		break;
	case CONSOLE_EVENT_PANIC_END:
		/* The panic report is complete: end the VM rather than leave
		 * the guest spinning (Linux's default is panic=0). */
		vm_request_stop(vm, VM_STOP_PANIC, VM_EXIT_GUEST_PANIC, NULL);
		break;
	default:
		break;
	}
}

static int vm_fail(char *err, size_t errlen, int rc, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(-rc));
	return rc;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int status,
		     const char *message)
{
	uint64_t one = 1;
	bool first = false;

	pthread_mutex_lock(&vm->stop_lock);
	if (vm->stop_reason == VM_STOP_NONE) {
		vm->stop_reason = reason;
		vm->exit_status = status;
		first = true;
	}
	pthread_mutex_unlock(&vm->stop_lock);
	if (!first)
		return;
	atomic_store(&vm->stopping, true);
	if (message && *message)
		kite_error("%s", message);
	if (write(vm->stop_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow from one write; nothing to do. */
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_kick(vm->vcpus[i]);
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

static void serial_transmit(void *opaque, uint8_t byte)
{
	struct serial_port *sp = opaque;

	if (sp->out_fd >= 0) {
		ssize_t n;

		do
			n = write(sp->out_fd, &byte, 1);
		while (n < 0 && errno == EINTR);
	}
	if (sp->watched) {
		enum console_event ev = console_watch_feed(&sp->watch, (char)byte);

		if (ev != CONSOLE_EVENT_NONE)
			console_event(sp->vm, ev, console_watch_line(&sp->watch));
	}
}

void vm_console_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;

	for (size_t done = 0; done < len;) {
		ssize_t n = write(STDOUT_FILENO, buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* stdout gone: the output is lost, the VM runs on */
		done += (size_t)n;
	}
	for (size_t i = 0; i < len && vm->hvc_watch; i++) {
		enum console_event ev = console_watch_feed(vm->hvc_watch,
							   (char)buf[i]);

		if (ev != CONSOLE_EVENT_NONE)
			console_event(vm, ev, console_watch_line(vm->hvc_watch));
	}
}

static void serial_set_irq(void *opaque, int level)
{
	struct serial_port *sp = opaque;

	vm_irq_line(sp->vm, sp->irq, level);
}

static void platform_debug_exit(void *opaque, uint32_t value)
{
	struct vm *vm = opaque;
	char msg[64];

	snprintf(msg, sizeof(msg), "guest wrote 0x%x to the debug-exit port",
		 value);
	/* Like QEMU's isa-debug-exit: status (value << 1) | 1, truncated to
	 * what an exit status can carry. */
	vm_request_stop(vm, VM_STOP_DEBUG_EXIT, (int)(((value << 1) | 1) & 0xFF),
			kite_verbose ? msg : NULL);
}

static void platform_boot_marker(void *opaque, uint8_t value)
{
	(void)opaque;
	kite_info("boot marker %u at %.3f s after exec", value, kite_uptime());
}

static void platform_reset(void *opaque, const char *source)
{
	struct vm *vm = opaque;
	char msg[128];

	snprintf(msg, sizeof(msg), "guest reset (%s)", source);
	vm_request_stop(vm, VM_STOP_RESET, VM_EXIT_OK, msg);
}

static void pm_on_sleep(void *opaque, unsigned slp_typ)
{
	struct vm *vm = opaque;
	char msg[64];

	if (slp_typ == PM_SLP_TYP_S5) {
		vm_request_stop(vm, VM_STOP_POWEROFF, VM_EXIT_OK,
				kite_verbose ? "guest powered off" : NULL);
		return;
	}
	/* Only \_S5 is offered in the DSDT; anything else is a guest bug. */
	snprintf(msg, sizeof(msg), "guest asked for unknown sleep type %u",
		 slp_typ);
	vm_request_stop(vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
}

static void pm_set_sci(void *opaque, bool level)
{
	struct vm *vm = opaque;

	vm_irq_line(vm, PM_SCI_IRQ, level);
}

/* ACPI and MP tables plus the PM block they describe. */
static int setup_firmware(struct vm *vm, uint64_t *rsdp, char *err,
			  size_t errlen)
{
	struct acpi_platform ap;
	struct mptable_platform mp = { .nr_cpus = vm->cfg->nr_vcpus,
				       .sci_irq = PM_SCI_IRQ, .pci = false };
	int rc;

	vm->pm = calloc(1, sizeof(*vm->pm));
	if (!vm->pm)
		return vm_fail(err, errlen, -ENOMEM, "power management");
	rc = pm_init(vm->pm, &vm->pio, PM_EVT_PORT, PM_CNT_PORT, PM_TMR_PORT,
		     &(struct pm_ops){ .on_sleep = pm_on_sleep,
				       .set_sci = pm_set_sci }, vm);
	if (rc) {
		free(vm->pm);
		vm->pm = NULL;
		return vm_fail(err, errlen, rc, "ACPI PM block");
	}

	acpi_platform_defaults(&ap, vm->cfg->nr_vcpus);
	/* Port 0x64 only takes the reset command (platform.c): there is no
	 * PS/2 controller to describe, and without the FADT's 8042 flag Linux
	 * does not probe for one (a failed probe costs seconds emulated). */
	ap.i8042 = false;
	/* PCI0 + MCFG + _PRT (the host bridge always exists) and the
	 * virtio-mmio devices (LNRO0005). */
	devices_describe(vm, &ap);
	for (unsigned i = 0; i < 4; i++)
		ap.com[i] = i < vm->cfg->nr_serial;
	rc = acpi_build(&vm->mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE, &ap, rsdp);
	if (rc)
		return vm_fail(err, errlen, rc, "ACPI tables");
	rc = mptable_build(&vm->mem, MPTABLE_FP_GPA, MPTABLE_GPA, MPTABLE_SIZE,
			   &mp);
	if (rc)
		return vm_fail(err, errlen, rc, "MP table");
	return 0;
}

static int setup_memory(struct vm *vm, char *err, size_t errlen)
{
	int rc = guest_memory_create(&vm->mem, vm->cfg->memory_size,
				     vm->cfg->hugetlb_dir);

	if (rc)
		return vm_fail(err, errlen, rc, "guest memory");
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.guest_phys_addr = vm->mem.regions[i].gpa,
			.memory_size = vm->mem.regions[i].size,
			.userspace_addr = (uintptr_t)vm->mem.regions[i].hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return vm_fail(err, errlen, -errno,
				       "KVM_SET_USER_MEMORY_REGION");
	}
	return 0;
}

static int setup_serial(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->cfg->nr_serial; i++) {
		struct serial_port *sp = calloc(1, sizeof(*sp));
		int rc;

		if (!sp)
			return vm_fail(err, errlen, -ENOMEM, "serial port");
		sp->vm = vm;
		sp->irq = com_ports[i].irq;
		/* COM1 is the console unless another was chosen; the others
		 * have no host backend yet and drop their output. */
		sp->out_fd = (i == 0 && vm->cfg->console == CONSOLE_SERIAL)
				     ? STDOUT_FILENO : -1;
		sp->watched = i == 0;
		serial8250_init(&sp->uart, serial_transmit, serial_set_irq, sp);
		vm->serial[i] = sp;
		rc = bus_register(&vm->pio, com_ports[i].port, 8,
				  &serial8250_bus_ops, &sp->uart, "serial");
		if (rc)
			return vm_fail(err, errlen, rc, "serial port registration");
	}
	return 0;
}

/* The kernel's symbols: its System.map if one is installed next to it,
 * else the kallsyms tables inside the image as loaded (Debian installs a
 * stub System.map).  NULL when neither is there. */
static struct ksyms *load_kernel_symbols(struct vm *vm,
					 const struct x86_load_context *ctx)
{
	struct ksyms *k = calloc(1, sizeof(*k));
	uint64_t len = ctx->kernel_end - ctx->kernel_start;
	void *img;

	if (!k)
		return NULL;
	if (ksyms_load_for_kernel(k, vm->cfg->kernel_path,
				  ctx->kernel_version) == 0)
		return k;
	if (ctx->kernel_end > ctx->kernel_start &&
	    guest_memory_translate(&vm->mem, ctx->kernel_start, len, &img) == 0 &&
	    ksyms_load_kallsyms(k, img, len) == 0) {
		kite_info("kernel symbols: %zu from the image's kallsyms", k->nr);
		return k;
	}
	free(k);
	return NULL;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, char *err,
	      size_t errlen)
{
	struct x86_boot_entry entry;
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = -1;
	vm->mem.fd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	if (bus_init(&vm->pio, "pio") || bus_init(&vm->mmio, "mmio"))
		return vm_fail(err, errlen, -ENOMEM, "bus");
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0)
		return vm_fail(err, errlen, -errno, "eventfd");

	if (cfg->console == CONSOLE_VIRTIO) {
		/* devices_setup() puts hvc0 on vm_console_output(). */
		vm->hvc_watch = calloc(1, sizeof(*vm->hvc_watch));
		if (!vm->hvc_watch)
			return vm_fail(err, errlen, -ENOMEM, "console");
	}
	rc = kvm_open(&vm->kvm_fd, err, errlen);
	if (rc)
		return rc;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return vm_fail(err, errlen, -errno, "KVM_CREATE_VM");
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0)
		return vm_fail(err, errlen, -errno, "KVM_GET_VCPU_MMAP_SIZE");
	if ((unsigned)kvm_check_cap(vm->kvm_fd, KVM_CAP_MAX_VCPUS) < cfg->nr_vcpus &&
	    (unsigned)kvm_check_cap(vm->kvm_fd, KVM_CAP_NR_VCPUS) < cfg->nr_vcpus) {
		snprintf(err, errlen, "option '--cpus': KVM supports at most %d vCPUs",
			 kvm_check_cap(vm->kvm_fd, KVM_CAP_MAX_VCPUS));
		return -EINVAL;
	}

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_GPA) < 0)
		return vm_fail(err, errlen, -errno, "KVM_SET_TSS_ADDR");
	{
		uint64_t idmap = KVM_IDENTITY_MAP_GPA;

		/* Optional: only VMX without unrestricted guests needs it. */
		ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return vm_fail(err, errlen, -errno, "KVM_CREATE_IRQCHIP");
	{
		struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

		if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
			return vm_fail(err, errlen, -errno, "KVM_CREATE_PIT2");
	}

	rc = setup_memory(vm, err, errlen);
	if (rc)
		return rc;

	vm->platform = calloc(1, sizeof(*vm->platform));
	if (!vm->platform)
		return vm_fail(err, errlen, -ENOMEM, "platform");
	rc = x86_platform_init(vm->platform, &vm->pio,
			       &(struct x86_platform_events){
				       .debug_exit = platform_debug_exit,
				       .reset = platform_reset,
				       .boot_marker = platform_boot_marker,
				       .opaque = vm,
				       .reset_ctrl_via_pci = true });
	if (rc)
		return vm_fail(err, errlen, rc, "platform devices");
	rc = devices_setup(vm, err, errlen);
	if (rc)
		return rc;
	rc = setup_serial(vm, err, errlen);
	if (rc)
		return rc;
	vm->rtc = calloc(1, sizeof(*vm->rtc));
	if (!vm->rtc)
		return vm_fail(err, errlen, -ENOMEM, "rtc");
	rtc_init(vm->rtc, vm->mem.regions[0].size,
		 vm->mem.nr_regions > 1 ? vm->mem.regions[1].size : 0, NULL);
	rc = bus_register(&vm->pio, RTC_INDEX_PORT, 2, &rtc_bus_ops, vm->rtc,
			  "cmos-rtc");
	if (rc)
		return vm_fail(err, errlen, rc, "rtc registration");

	{
		struct x86_load_context ctx = { .pvm_profile = false };
		enum x86_kernel_format format = X86_KERNEL_UNKNOWN;

		rc = setup_firmware(vm, &ctx.rsdp_gpa, err, errlen);
		if (rc)
			return rc;
		/* The PVM profile concerns Linux guests; decided once the
		 * image is recognised. */
		ctx.pvm_profile = pvm_host_detected();
		ctx.ecam_base = DEVICES_ECAM_BASE;
		ctx.ecam_size = (uint64_t)DEVICES_ECAM_BUSES << 20;
		rc = x86_load_kernel(&vm->mem, cfg, &ctx, &entry,
				     &format, err, errlen);
		vm->kernel_format = format;
		if (rc) {
			vm->bad_input = x86_load_bad_input(rc);
			return rc;
		}
		/* Optional: names guest code in emulation-failure reports
		 * and KITE_PROFILE. */
		if (ctx.kernel_version[0])
			vm->ksyms = load_kernel_symbols(vm, &ctx);
		vm->pvm_profile = ctx.pvm_profile &&
				  (vm->kernel_format == X86_KERNEL_BZIMAGE ||
				   vm->kernel_format == X86_KERNEL_ELF64);
		if (vm->pvm_profile)
			kite_error("note: PVM host (kvm_pvm): guest kernel code runs emulated; "
				   "kite hides CPU features the emulator refuses (CX16, POPCNT, "
				   "XSAVE/AVX, SSSE3, SMAP, FSGSBASE, RDTSCP, ERMS/FSRM), adds "
				   "'%s 8250.nr_uarts=%u' to the kernel command line, unpacks a "
				   "compressed initramfs on the host and completes int3, int n, "
				   "fences and ldmxcsr/stmxcsr itself", pvm_kernel_params,
				   cfg->nr_serial);
	}

	vm->vcpus = calloc(cfg->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return vm_fail(err, errlen, -ENOMEM, "vCPUs");
	for (unsigned i = 0; i < cfg->nr_vcpus; i++) {
		rc = vcpu_create(vm, i, &vm->vcpus[i]);
		if (rc) {
			snprintf(err, errlen, "vcpu%u: KVM_CREATE_VCPU: %s", i,
				 strerror(-rc));
			return rc;
		}
		vm->nr_vcpus = i + 1;
	}
	for (unsigned i = 0; i < cfg->nr_vcpus; i++) {
		rc = x86_vcpu_set_cpuid(vm, vm->vcpus[i]);
		if (rc) {
			snprintf(err, errlen, "vcpu%u: KVM_SET_CPUID2: %s", i,
				 strerror(-rc));
			return rc;
		}
		rc = x86_vcpu_setup_lapic(vm->vcpus[i]);
		if (rc) {
			snprintf(err, errlen, "vcpu%u: local APIC: %s", i,
				 strerror(-rc));
			return rc;
		}
	}
	rc = x86_vcpu_enter(vm->vcpus[0], &entry);
	if (rc)
		return vm_fail(err, errlen, rc, "vcpu0: entry state");
	return 0;
}

/* Feed console input to COM1, honouring the Ctrl-A escape. */
static bool console_input(struct vm *vm, struct term_escape *esc)
{
	uint8_t in[256], out[256];
	size_t n_out = 0;
	ssize_t n = read(STDIN_FILENO, in, sizeof(in));

	if (n <= 0)
		return n < 0 && (errno == EINTR || errno == EAGAIN);
	for (ssize_t i = 0; i < n; i++) {
		unsigned char c;

		switch (term_escape_feed(esc, in[i], &c)) {
		case TERM_KEY_PASS:
			out[n_out++] = c;
			break;
		case TERM_KEY_QUIT:
			vm_request_stop(vm, VM_STOP_USER, VM_EXIT_OK, NULL);
			return false;
		case TERM_KEY_SWALLOW:
			break;
		}
	}
	for (size_t done = 0; done < n_out;) {
		if (vm->cfg->console == CONSOLE_VIRTIO) {
			struct virtio_console *con = devices_stdio_console(vm);

			if (!con)
				break;
			done += virtio_console_port0_input(con, out + done,
							   n_out - done);
		} else {
			done += serial8250_receive(&vm->serial[0]->uart,
						   out + done, n_out - done);
		}
		if (done < n_out) {
			/* The guest is not reading; wait a little. */
			if (atomic_load(&vm->stopping))
				break;
			usleep(1000);
		}
	}
	return true;
}

/* --console virtio: give hvc0 the terminal's size (virtio 1.2 §5.3.6). */
static void console_winsize(struct vm *vm)
{
	struct virtio_console *con = devices_stdio_console(vm);
	struct winsize ws;

	if (con && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col &&
	    ws.ws_row)
		virtio_console_resize(con, ws.ws_col, ws.ws_row);
}

static void event_loop(struct vm *vm)
{
	struct term_escape esc = { false };
	bool stdin_open = vm->cfg->console == CONSOLE_SERIAL ||
			  vm->cfg->console == CONSOLE_VIRTIO;
	sigset_t sigs;
	int sfd;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGWINCH); /* terminal resized: hvc0's size */
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	console_winsize(vm);

	while (!atomic_load(&vm->stopping)) {
		struct pollfd p[3] = {
			{ .fd = vm->stop_fd, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
			{ .fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
		};

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si)) {
				/* nothing read: poll again */
			} else if (si.ssi_signo == SIGWINCH) {
				console_winsize(vm);
			} else {
				char msg[64];

				snprintf(msg, sizeof(msg), "stopped by signal %s",
					 strsignal((int)si.ssi_signo));
				vm_request_stop(vm, VM_STOP_USER,
						128 + (int)si.ssi_signo, msg);
			}
		}
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
			stdin_open = console_input(vm, &esc);
	}
	if (sfd >= 0)
		close(sfd);
}

/* KITE_PROFILE (arch/x86/profile.h): poke every vCPU about 100 times a
 * second; each records the guest's RIP when KVM_RUN returns. */
static void *profile_sampler(void *arg)
{
	struct vm *vm = arg;
	const struct timespec period = { 0, 10 * 1000 * 1000 };

	pthread_setname_np(pthread_self(), "kite-profile");
	while (!atomic_load(&vm->stopping)) {
		nanosleep(&period, NULL);
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			vcpu_poke(vm->vcpus[i]);
	}
	return NULL;
}

static void profile_write(struct vm *vm, const char *path)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (!f) {
		kite_warn("KITE_PROFILE '%s': %s", path, strerror(errno));
		return;
	}
	rc = guest_profile_write(vm->profile, vm->ksyms, f);
	if (fclose(f) && !rc)
		rc = -errno;
	if (rc)
		kite_warn("KITE_PROFILE '%s': %s", path, strerror(-rc));
	else
		kite_info("guest profile (%zu samples%s) written to %s",
			  vm->profile->nr,
			  vm->ksyms ? "" : ", no System.map: unnamed", path);
}

int vm_run(struct vm *vm)
{
	const char *profile_path = getenv("KITE_PROFILE");
	pthread_t sampler;
	bool sampling = false;
	sigset_t sigs, old;
	int rc;

	/* Block the stop signals in every thread; the event loop takes them
	 * through a signalfd. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGWINCH); /* terminal resized: hvc0's size */
	pthread_sigmask(SIG_BLOCK, &sigs, &old);

	rc = vcpu_signals_init();
	if (rc) {
		kite_error("vcpu signals: %s", strerror(-rc));
		return VM_EXIT_FAILURE;
	}
	if (vm->cfg->console != CONSOLE_NONE && term_raw_enter() < 0)
		kite_warn("stdin: cannot switch the terminal to raw mode");
	if (profile_path && *profile_path) {
		vm->profile = calloc(1, sizeof(*vm->profile));
		if (vm->profile)
			guest_profile_init(vm->profile);
	}

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		rc = vcpu_start(vm->vcpus[i]);
		if (rc) {
			char msg[64];

			snprintf(msg, sizeof(msg), "vcpu%u: thread: %s", i,
				 strerror(-rc));
			vm_request_stop(vm, VM_STOP_ERROR, VM_EXIT_FAILURE, msg);
			break;
		}
	}
	if (vm->profile && !atomic_load(&vm->stopping))
		sampling = pthread_create(&sampler, NULL, profile_sampler, vm) == 0;
	event_loop(vm);
	if (sampling)
		pthread_join(sampler, NULL);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		vcpu_kick(vm->vcpus[i]);
		vcpu_join(vm->vcpus[i]);
	}
	if (vm->profile)
		profile_write(vm, profile_path);
	term_restore();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	{
		struct exit_counts c = exit_counts(vm);

		kite_info("exits: pio=%lu mmio=%lu emulated=%lu; ran %.3f s "
			  "(cpu %.1f s)", c.pio, c.mmio, c.emulated, kite_uptime(),
			  cpu_seconds());
	}
	return vm->exit_status;
}

void vm_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nr_vcpus = 0;
	devices_destroy(vm);
	free(vm->hvc_watch);
	vm->hvc_watch = NULL;
	for (unsigned i = 0; i < VM_CONFIG_MAX_SERIAL; i++) {
		if (vm->serial[i]) {
			serial8250_destroy(&vm->serial[i]->uart);
			free(vm->serial[i]);
			vm->serial[i] = NULL;
		}
	}
	free(vm->platform);
	vm->platform = NULL;
	if (vm->profile) {
		guest_profile_free(vm->profile);
		free(vm->profile);
		vm->profile = NULL;
	}
	if (vm->ksyms) {
		ksyms_free(vm->ksyms);
		free(vm->ksyms);
		vm->ksyms = NULL;
	}
	if (vm->pm) {
		pm_destroy(vm->pm);
		free(vm->pm);
		vm->pm = NULL;
	}
	if (vm->rtc) {
		rtc_destroy(vm->rtc);
		free(vm->rtc);
		vm->rtc = NULL;
	}
	guest_memory_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	pthread_mutex_destroy(&vm->stop_lock);
}
