#include "vmm/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/devices.h"
#include "vmm/log.h"
#include "vmm/size.h"

#define DEFAULT_MEMORY (256ULL << 20)
#define MIN_MEMORY (2ULL << 20)
#define MAX_MEMORY (1ULL << 40)

enum {
	OPT_CONSOLE = 0x100,
	OPT_SERIAL,
	OPT_HUGETLB,
	OPT_REBOOT,
	OPT_BOOT,
	OPT_DEVICE,
	OPT_TRANSPORT,
};

static const struct option run_options[] = {
	{ "kernel", required_argument, NULL, 'k' },
	{ "initrd", required_argument, NULL, 'i' },
	{ "params", required_argument, NULL, 'p' },
	{ "cmdline", required_argument, NULL, 'p' },
	{ "memory", required_argument, NULL, 'm' },
	{ "cpus", required_argument, NULL, 'c' },
	{ "name", required_argument, NULL, 'n' },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "hugetlb", required_argument, NULL, OPT_HUGETLB },
	{ "reboot", required_argument, NULL, OPT_REBOOT },
	{ "boot", required_argument, NULL, OPT_BOOT },
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "disk", required_argument, NULL, 'd' },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

void cli_run_usage(void *out)
{
	fputs("Usage: kite run -k KERNEL [OPTION]...\n"
	      "Boot a virtual machine.\n\n"
	      "  -k, --kernel FILE     kernel: bzImage, vmlinux ELF or multiboot ELF\n"
	      "  -i, --initrd FILE     initial ramdisk (multiboot: module)\n"
	      "  -p, --params TEXT     kernel command line\n"
	      "  -m, --memory SIZE     guest RAM, e.g. 512M, 2G (default 256M;\n"
	      "                        a bare number is MiB)\n"
	      "  -c, --cpus N          vCPUs (default 1)\n"
	      "  -n, --name NAME       VM name (default kite-PID)\n"
	      "      --console KIND    serial (COM1 on stdio, default), virtio, none\n"
	      "      --serial N        number of 8250 ports, COM1..COMN (1-4)\n"
	      "      --hugetlb DIR     back guest RAM with a file in hugetlbfs DIR\n"
	      "      --reboot ACTION   on guest reset: exit (default) or restart\n"
	      "      --boot PROTOCOL   Linux entry: linux64 (default), pvh, bzimage64,\n"
	      "                        bios\n"
	      "      --device KIND[,transport=T][,KEY=VALUE]...\n"
	      "                        add a virtio device (repeatable); KIND: rng,\n"
	      "                        console[,port=NAME:SOCKET]..., blk (see -d)\n"
	      "  -d, --disk PATH[,ro][,format=raw|qcow2][,serial=S][,cache=C]\n"
	      "             [,queues=N][,poll=US][,backing=on|off][,shared]\n"
	      "             [,transport=T]\n"
	      "                        add a virtio-blk disk (repeatable); C:\n"
	      "                        writeback (default), writethrough, none, unsafe;\n"
	      "                        N: request queues, one thread each (1-16);\n"
	      "                        US: longest busy-poll window, microseconds\n"
	      "                        (adaptive; default 32, 0: off);\n"
	      "                        backing=off: refuse a qcow2 image that names\n"
	      "                        a backing file; shared (with ro): read an\n"
	      "                        image another program has open for writing\n"
	      "      --transport T     default device transport: pci (default),\n"
	      "                        pci-transitional, pci-legacy, mmio, mmio-legacy\n"
	      "  -v, --verbose         say what kite is doing\n"
	      "  -h, --help            show this help\n\n"
	      "Press Ctrl-A x to quit.  See kite-run(1).\n",
	      (FILE *)out);
}

static enum cli_result fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum cli_result fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return CLI_ERROR;
}

static enum cli_result check_file(const char *what, const char *path,
				  char *err, size_t errlen)
{
	if (access(path, R_OK) < 0)
		return fail(err, errlen, "%s '%s': %s", what, path,
			    strerror(errno));
	return CLI_OK;
}

static int parse_transport(const char *s, enum device_transport *t)
{
	if (strcmp(s, "pci") == 0)
		*t = TRANSPORT_PCI;
	else if (strcmp(s, "pci-transitional") == 0)
		*t = TRANSPORT_PCI_TRANSITIONAL;
	else if (strcmp(s, "pci-legacy") == 0)
		*t = TRANSPORT_PCI_LEGACY;
	else if (strcmp(s, "mmio") == 0)
		*t = TRANSPORT_MMIO;
	else if (strcmp(s, "mmio-legacy") == 0)
		*t = TRANSPORT_MMIO_LEGACY;
	else
		return -EINVAL;
	return 0;
}

#define TRANSPORT_NAMES "pci, pci-transitional, pci-legacy, mmio, mmio-legacy"

/* --device KIND[,transport=T][,KEY=VALUE]...: the text is copied into the
 * device_config and split there; the kind checks its own parameters. */
static enum cli_result parse_device(const char *arg, struct vm_config *cfg,
				    char *err, size_t errlen)
{
	struct device_config *dc;
	char *p, *next;

	if (cfg->nr_devices >= VM_CONFIG_MAX_DEVICES)
		return fail(err, errlen, "option '--device': at most %d devices",
			    VM_CONFIG_MAX_DEVICES);
	dc = &cfg->devices[cfg->nr_devices];
	memset(dc, 0, sizeof(*dc));
	if (strlen(arg) >= sizeof(dc->text))
		return fail(err, errlen, "option '--device': '%s' is too long",
			    arg);
	strcpy(dc->text, arg);
	next = strchr(dc->text, ',');
	if (next)
		*next++ = '\0';
	dc->kind = devices_find_kind(dc->text);
	if (!dc->kind)
		return fail(err, errlen,
			    "option '--device': unknown kind '%s' (%s)",
			    dc->text, devices_kind_names());
	while ((p = next) != NULL) {
		char *value;
		char reason[160] = "";

		next = strchr(p, ',');
		if (next)
			*next++ = '\0';
		value = strchr(p, '=');
		if (!value || value == p)
			return fail(err, errlen,
				    "option '--device': '%s' is not KEY=VALUE", p);
		*value++ = '\0';
		if (strcmp(p, "transport") == 0) {
			if (parse_transport(value, &dc->transport))
				return fail(err, errlen,
					    "option '--device': unknown transport '%s' (" TRANSPORT_NAMES ")",
					    value);
			continue;
		}
		if (!dc->kind->check_param)
			return fail(err, errlen,
				    "option '--device': %s takes no parameter '%s'",
				    dc->kind->name, p);
		if (dc->kind->check_param(p, value, reason, sizeof(reason)))
			return fail(err, errlen, "option '--device': %s: %s",
				    dc->kind->name, reason);
		if (dc->nr_params >= VM_CONFIG_MAX_DEVICE_PARAMS)
			return fail(err, errlen,
				    "option '--device': too many parameters");
		dc->params[dc->nr_params].key = (uint8_t)(p - dc->text);
		dc->params[dc->nr_params].value = (uint8_t)(value - dc->text);
		dc->nr_params++;
	}
	cfg->nr_devices++;
	return CLI_OK;
}

/* -d PATH[,ro][,shared][,KEY=VALUE]...: shorthand for
 * --device blk,path=PATH[,ro=on][,shared=on][,KEY=VALUE]... (PATH without
 * commas). */
static enum cli_result parse_disk(const char *arg, struct vm_config *cfg,
				  char *err, size_t errlen)
{
	char text[sizeof(cfg->devices[0].text)], copy[sizeof(text)];
	char *p, *next;
	size_t n;

	if (strlen(arg) >= sizeof(copy) || !*arg || *arg == ',')
		return fail(err, errlen, "option '--disk': invalid disk '%s'",
			    arg);
	strcpy(copy, arg);
	next = copy;
	n = (size_t)snprintf(text, sizeof(text), "blk");
	for (int first = 1; (p = next) != NULL; first = 0) {
		next = strchr(p, ',');
		if (next)
			*next++ = '\0';
		if (first)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
					      ",path=%s", p);
		else if (strcmp(p, "ro") == 0 || strcmp(p, "shared") == 0)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
					      ",%s=on", p);
		else
			n += (size_t)snprintf(text + n, sizeof(text) - n, ",%s",
					      p);
		if (n >= sizeof(text))
			return fail(err, errlen,
				    "option '--disk': '%s' is too long", arg);
	}
	return parse_device(text, cfg, err, errlen);
}

enum cli_result cli_parse_run(int argc, char **argv, struct vm_config *cfg,
			      char *err, size_t errlen)
{
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = "";
	cfg->memory_size = DEFAULT_MEMORY;
	cfg->nr_vcpus = 1;
	cfg->console = CONSOLE_SERIAL;
	cfg->nr_serial = 1;
	cfg->reboot = REBOOT_EXIT;

	optind = 0; /* full reinitialisation: the tests parse many times */
	opterr = 0; /* we print our own one-line errors */
	while ((opt = getopt_long(argc, argv, ":k:i:p:m:c:n:d:vh", run_options,
				  NULL)) != -1) {
		int rc;

		switch (opt) {
		case 'k': cfg->kernel_path = optarg; break;
		case 'i': cfg->initrd_path = optarg; break;
		case 'p': cfg->cmdline = optarg; break;
		case 'n':
			if (!*optarg || strlen(optarg) > 64 || strchr(optarg, '/'))
				return fail(err, errlen,
					    "option '--name': invalid name '%s' (1-64 characters, no '/')",
					    optarg);
			cfg->name = optarg;
			break;
		case 'm':
			rc = parse_size(optarg, 1ULL << 20, &cfg->memory_size);
			if (rc)
				return fail(err, errlen,
					    "option '--memory': invalid size '%s'",
					    optarg);
			if (cfg->memory_size < MIN_MEMORY ||
			    cfg->memory_size > MAX_MEMORY)
				return fail(err, errlen,
					    "option '--memory': size '%s' out of range (2M to 1T)",
					    optarg);
			if (cfg->memory_size & 0xFFF)
				return fail(err, errlen,
					    "option '--memory': size '%s' is not a multiple of 4 KiB",
					    optarg);
			break;
		case 'c':
			if (parse_uint(optarg, 1, VM_CONFIG_MAX_VCPUS,
				       &cfg->nr_vcpus))
				return fail(err, errlen,
					    "option '--cpus': invalid count '%s' (1-%d)",
					    optarg, VM_CONFIG_MAX_VCPUS);
			break;
		case OPT_CONSOLE:
			if (strcmp(optarg, "serial") == 0)
				cfg->console = CONSOLE_SERIAL;
			else if (strcmp(optarg, "virtio") == 0)
				cfg->console = CONSOLE_VIRTIO;
			else if (strcmp(optarg, "none") == 0)
				cfg->console = CONSOLE_NONE;
			else
				return fail(err, errlen,
					    "option '--console': unknown console '%s' (serial, virtio, none)",
					    optarg);
			break;
		case OPT_SERIAL:
			if (parse_uint(optarg, 1, VM_CONFIG_MAX_SERIAL,
				       &cfg->nr_serial))
				return fail(err, errlen,
					    "option '--serial': invalid count '%s' (1-4)",
					    optarg);
			break;
		case OPT_HUGETLB:
			cfg->hugetlb_dir = optarg;
			break;
		case OPT_REBOOT:
			if (strcmp(optarg, "exit") == 0)
				cfg->reboot = REBOOT_EXIT;
			else if (strcmp(optarg, "restart") == 0)
				cfg->reboot = REBOOT_RESTART;
			else
				return fail(err, errlen,
					    "option '--reboot': unknown action '%s' (exit, restart)",
					    optarg);
			break;
		case OPT_BOOT:
			if (strcmp(optarg, "linux64") == 0)
				cfg->boot = BOOT_LINUX64;
			else if (strcmp(optarg, "pvh") == 0)
				cfg->boot = BOOT_PVH;
			else if (strcmp(optarg, "bzimage64") == 0)
				cfg->boot = BOOT_BZIMAGE64;
			else if (strcmp(optarg, "bios") == 0)
				cfg->boot = BOOT_BIOS;
			else
				return fail(err, errlen,
					    "option '--boot': unknown protocol '%s' (linux64, pvh, bzimage64, bios)",
					    optarg);
			break;
		case OPT_DEVICE:
			if (parse_device(optarg, cfg, err, errlen))
				return CLI_ERROR;
			break;
		case 'd':
			if (parse_disk(optarg, cfg, err, errlen))
				return CLI_ERROR;
			break;
		case OPT_TRANSPORT:
			if (parse_transport(optarg, &cfg->default_transport))
				return fail(err, errlen,
					    "option '--transport': unknown transport '%s' (" TRANSPORT_NAMES ")",
					    optarg);
			break;
		case 'v':
			kite_verbose = 1;
			break;
		case 'h':
			return CLI_HELP;
		case ':':
			return fail(err, errlen, "option '%s' needs a value",
				    argv[optind - 1]);
		default:
			/* An unknown short option inside a cluster ("-xv")
			 * leaves optind on its own element, so argv[optind-1]
			 * would name the previous argument; getopt puts the
			 * character in optopt (0 for a bad long option). */
			if (optopt > 0 && optopt < 0x80 &&
			    !strchr("kipmcndvh", optopt))
				return fail(err, errlen, "unknown option '-%c'",
					    optopt);
			return fail(err, errlen, "unknown option '%s'",
				    argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
	if (!cfg->kernel_path)
		return fail(err, errlen, "no kernel given (use -k FILE)");
	if (check_file("kernel", cfg->kernel_path, err, errlen))
		return CLI_ERROR;
	if (cfg->initrd_path &&
	    check_file("initrd", cfg->initrd_path, err, errlen))
		return CLI_ERROR;
	if (cfg->hugetlb_dir && access(cfg->hugetlb_dir, W_OK) < 0)
		return fail(err, errlen, "hugetlb directory '%s': %s",
			    cfg->hugetlb_dir, strerror(errno));
	if (strlen(cfg->cmdline) >= 65536)
		return fail(err, errlen,
			    "option '--params': command line longer than 65535 bytes");
	return CLI_OK;
}
