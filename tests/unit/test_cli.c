/* vmm/cli: the `kite run` command line into struct vm_config. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "vmm/cli.h"
#include "vmm/devices.h"
#include "vmm/disk/disk.h"
#include "vmm/log.h"

/* A scratch directory holding a readable kernel and initrd. */
static char dir[PATH_MAX];
static char kernel[PATH_MAX + 16];
static char initrd[PATH_MAX + 16];
static char missing[PATH_MAX + 16];

static struct vm_config cfg;
static char err[512];

static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_msg(fd >= 0, "creating %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/kite-test-cli-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", dir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", dir);
	snprintf(missing, sizeof(missing), "%s/no-such-file", dir);
	touch(kernel);
	touch(initrd);
	kite_verbose = 0;
	memset(err, 0, sizeof(err));
}

static void teardown(void)
{
	unlink(kernel);
	unlink(initrd);
	rmdir(dir);
}

/* Run the parser on "run" followed by the given arguments (NULL-ended).
 * getopt permutes argv, so it gets a private, writable array. */
static enum cli_result parse_argv(const char *const *args)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = (char *)"run";
	while (*args) {
		ck_assert_int_lt(argc, 63);
		argv[argc++] = (char *)*args++;
	}
	argv[argc] = NULL;
	return cli_parse_run(argc, argv, &cfg, err, sizeof(err));
}

#define PARSE(...) parse_argv((const char *const[]){ __VA_ARGS__, NULL })

/* The parse failed and the one-line message mentions |needle|. */
#define ck_assert_error(result, needle)                                     \
	do {                                                                \
		ck_assert_int_eq((result), CLI_ERROR);                      \
		ck_assert_msg(strstr(err, (needle)) != NULL,                \
			      "message '%s' does not mention '%s'", err,    \
			      (needle));                                    \
		ck_assert_ptr_null(strchr(err, '\n'));                      \
	} while (0)

START_TEST(defaults_with_only_a_kernel)
{
	ck_assert_int_eq(PARSE("-k", kernel), CLI_OK);
	ck_assert_str_eq(cfg.kernel_path, kernel);
	ck_assert_ptr_null(cfg.initrd_path);
	ck_assert_str_eq(cfg.cmdline, "");
	ck_assert_ptr_null(cfg.name);
	ck_assert_uint_eq(cfg.memory_size, 256ULL << 20);
	ck_assert_uint_eq(cfg.nr_vcpus, 1);
	ck_assert_int_eq(cfg.console, CONSOLE_SERIAL);
	ck_assert_uint_eq(cfg.nr_serial, 1);
	ck_assert_ptr_null(cfg.hugetlb_dir);
	ck_assert_int_eq(cfg.reboot, REBOOT_EXIT);
	ck_assert_int_eq(kite_verbose, 0);
}
END_TEST

START_TEST(short_options_land_in_config)
{
	ck_assert_int_eq(PARSE("-k", kernel, "-i", initrd, "-p", "console=ttyS0",
			       "-m", "512", "-c", "4", "-n", "vm1", "-v"),
			 CLI_OK);
	ck_assert_str_eq(cfg.kernel_path, kernel);
	ck_assert_str_eq(cfg.initrd_path, initrd);
	ck_assert_str_eq(cfg.cmdline, "console=ttyS0");
	ck_assert_uint_eq(cfg.memory_size, 512ULL << 20);
	ck_assert_uint_eq(cfg.nr_vcpus, 4);
	ck_assert_str_eq(cfg.name, "vm1");
	ck_assert_int_eq(kite_verbose, 1);
}
END_TEST

START_TEST(attached_short_values)
{
	ck_assert_int_eq(PARSE("-k", kernel, "-m2G", "-c8"), CLI_OK);
	ck_assert_uint_eq(cfg.memory_size, 2ULL << 30);
	ck_assert_uint_eq(cfg.nr_vcpus, 8);
}
END_TEST

START_TEST(long_options_land_in_config)
{
	ck_assert_int_eq(PARSE("--kernel", kernel, "--initrd", initrd,
			       "--params", "quiet", "--memory", "1G",
			       "--cpus", "2", "--name", "guest",
			       "--console", "virtio", "--serial", "3",
			       "--hugetlb", dir, "--reboot", "restart",
			       "--verbose"),
			 CLI_OK);
	ck_assert_str_eq(cfg.kernel_path, kernel);
	ck_assert_str_eq(cfg.initrd_path, initrd);
	ck_assert_str_eq(cfg.cmdline, "quiet");
	ck_assert_uint_eq(cfg.memory_size, 1ULL << 30);
	ck_assert_uint_eq(cfg.nr_vcpus, 2);
	ck_assert_str_eq(cfg.name, "guest");
	ck_assert_int_eq(cfg.console, CONSOLE_VIRTIO);
	ck_assert_uint_eq(cfg.nr_serial, 3);
	ck_assert_str_eq(cfg.hugetlb_dir, dir);
	ck_assert_int_eq(cfg.reboot, REBOOT_RESTART);
	ck_assert_int_eq(kite_verbose, 1);
}
END_TEST

START_TEST(long_options_with_equals)
{
	char karg[PATH_MAX + 32];

	snprintf(karg, sizeof(karg), "--kernel=%s", kernel);
	ck_assert_int_eq(PARSE(karg, "--cmdline=a b c", "--memory=64MiB",
			       "--console=none", "--reboot=exit", "--serial=4",
			       "--cpus=64"),
			 CLI_OK);
	ck_assert_str_eq(cfg.kernel_path, kernel);
	ck_assert_str_eq(cfg.cmdline, "a b c");
	ck_assert_uint_eq(cfg.memory_size, 64ULL << 20);
	ck_assert_int_eq(cfg.console, CONSOLE_NONE);
	ck_assert_int_eq(cfg.reboot, REBOOT_EXIT);
	ck_assert_uint_eq(cfg.nr_serial, 4);
	ck_assert_uint_eq(cfg.nr_vcpus, 64);
}
END_TEST

START_TEST(console_serial_and_last_option_wins)
{
	ck_assert_int_eq(PARSE("-k", kernel, "--console", "none", "--console",
			       "serial", "-m", "64", "-m", "128"),
			 CLI_OK);
	ck_assert_int_eq(cfg.console, CONSOLE_SERIAL);
	ck_assert_uint_eq(cfg.memory_size, 128ULL << 20);
}
END_TEST

START_TEST(missing_kernel)
{
	ck_assert_error(PARSE("-m", "512"), "kernel");
	ck_assert_error(parse_argv((const char *const[]){ NULL }), "kernel");
}
END_TEST

START_TEST(nonexistent_kernel_names_the_file)
{
	ck_assert_error(PARSE("-k", missing), missing);
	ck_assert_msg(strstr(err, "kernel") != NULL, "%s", err);
}
END_TEST

START_TEST(nonexistent_initrd_names_the_file)
{
	ck_assert_error(PARSE("-k", kernel, "-i", missing), missing);
	ck_assert_msg(strstr(err, "initrd") != NULL, "%s", err);
}
END_TEST

START_TEST(nonexistent_hugetlb_dir_names_it)
{
	ck_assert_error(PARSE("-k", kernel, "--hugetlb", missing), missing);
}
END_TEST

START_TEST(bad_memory_values)
{
	static const char *const bad[] = {
		"abc", "", "12Q", "-5", "1M", "0", "2T", "99999999999999999999",
		"4097K",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(err, 0, sizeof(err));
		ck_assert_error(PARSE("-k", kernel, "-m", bad[i]), "--memory");
		ck_assert_msg(strstr(err, bad[i]) != NULL, "%s", err);
	}
	/* The bounds themselves are accepted. */
	ck_assert_int_eq(PARSE("-k", kernel, "-m", "2M"), CLI_OK);
	ck_assert_uint_eq(cfg.memory_size, 2ULL << 20);
	ck_assert_int_eq(PARSE("-k", kernel, "-m", "1T"), CLI_OK);
	ck_assert_uint_eq(cfg.memory_size, 1ULL << 40);
}
END_TEST

START_TEST(bad_cpus_values)
{
	static const char *const bad[] = { "0", "65", "-1", "two", "", "4x" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(err, 0, sizeof(err));
		ck_assert_error(PARSE("-k", kernel, "--cpus", bad[i]), "--cpus");
	}
}
END_TEST

START_TEST(bad_console_value)
{
	ck_assert_error(PARSE("-k", kernel, "--console", "ttyS0"), "--console");
	ck_assert_msg(strstr(err, "ttyS0") != NULL, "%s", err);
	ck_assert_error(PARSE("-k", kernel, "--console", "Serial"), "--console");
}
END_TEST

START_TEST(bad_serial_values)
{
	ck_assert_error(PARSE("-k", kernel, "--serial", "0"), "--serial");
	ck_assert_error(PARSE("-k", kernel, "--serial", "5"), "--serial");
	ck_assert_error(PARSE("-k", kernel, "--serial", "one"), "--serial");
}
END_TEST

START_TEST(bad_reboot_value)
{
	ck_assert_error(PARSE("-k", kernel, "--reboot", "halt"), "--reboot");
	ck_assert_msg(strstr(err, "halt") != NULL, "%s", err);
}
END_TEST

START_TEST(bad_name_values)
{
	char longname[80];

	memset(longname, 'a', 65);
	longname[65] = '\0';
	ck_assert_error(PARSE("-k", kernel, "-n", ""), "--name");
	ck_assert_error(PARSE("-k", kernel, "-n", "a/b"), "--name");
	ck_assert_error(PARSE("-k", kernel, "-n", longname), "--name");
	longname[64] = '\0';
	ck_assert_int_eq(PARSE("-k", kernel, "-n", longname), CLI_OK);
	ck_assert_str_eq(cfg.name, longname);
}
END_TEST

START_TEST(overlong_cmdline_refused)
{
	char *text = malloc(65536 + 1);

	ck_assert_ptr_nonnull(text);
	memset(text, 'x', 65536);
	text[65536] = '\0';
	ck_assert_error(PARSE("-k", kernel, "-p", text), "--params");
	text[65535] = '\0';
	ck_assert_int_eq(PARSE("-k", kernel, "-p", text), CLI_OK);
	free(text);
}
END_TEST

START_TEST(unknown_options)
{
	ck_assert_error(PARSE("-k", kernel, "--bogus"), "--bogus");
	ck_assert_error(PARSE("-k", kernel, "-x"), "-x");
	/* Inside a cluster the message still names the unknown option. */
	ck_assert_error(PARSE("-k", kernel, "-xv"), "-x");
	ck_assert_msg(strstr(err, kernel) == NULL, "%s", err);
	ck_assert_error(PARSE("-k", kernel, "--verbose=1"), "--verbose");
}
END_TEST

START_TEST(unexpected_argument)
{
	ck_assert_error(PARSE("-k", kernel, "stray"), "stray");
}
END_TEST

START_TEST(missing_values)
{
	ck_assert_error(PARSE("-k"), "-k");
	ck_assert_msg(strstr(err, "value") != NULL, "%s", err);
	ck_assert_error(PARSE("-k", kernel, "--memory"), "--memory");
	ck_assert_error(PARSE("-k", kernel, "-c"), "-c");
	ck_assert_error(PARSE("-k", kernel, "--console"), "--console");
	ck_assert_error(PARSE("-k", kernel, "--reboot"), "--reboot");
}
END_TEST

START_TEST(help_wins)
{
	ck_assert_int_eq(PARSE("--help"), CLI_HELP);
	ck_assert_int_eq(PARSE("-h"), CLI_HELP);
	ck_assert_int_eq(PARSE("-k", kernel, "-h", "-m", "bad"), CLI_HELP);
}
END_TEST

START_TEST(usage_mentions_options)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	cli_run_usage(f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "--kernel"));
	ck_assert_ptr_nonnull(strstr(buf, "--memory"));
	ck_assert_ptr_nonnull(strstr(buf, "Ctrl-A x"));
	free(buf);
}
END_TEST

START_TEST(repeated_parsing_resets_getopt)
{
	/* An error part way through must not leave getopt state behind. */
	ck_assert_error(PARSE("-k", kernel, "-c", "0", "-m", "64"), "--cpus");
	ck_assert_int_eq(PARSE("-k", kernel, "-c", "3"), CLI_OK);
	ck_assert_uint_eq(cfg.nr_vcpus, 3);
	ck_assert_uint_eq(cfg.memory_size, 256ULL << 20);
	/* Stop inside a cluster, then parse again from the start. */
	ck_assert_int_eq(PARSE("-vh", "-k", kernel), CLI_HELP);
	ck_assert_int_eq(PARSE("-k", kernel, "-c2"), CLI_OK);
	ck_assert_uint_eq(cfg.nr_vcpus, 2);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(PARSE("--kernel", kernel, "--cpus", "5"),
				 CLI_OK);
		ck_assert_uint_eq(cfg.nr_vcpus, 5);
		ck_assert_str_eq(cfg.kernel_path, kernel);
	}
}
END_TEST

START_TEST(result_codes)
{
	ck_assert_int_eq(CLI_OK, 0);
	ck_assert_int_ne(CLI_HELP, CLI_OK);
	ck_assert_int_ne(CLI_ERROR, CLI_OK);
	ck_assert_int_ne(CLI_ERROR, CLI_HELP);
}
END_TEST

/* ---- --device / --transport ---- */

START_TEST(devices_default_to_none_and_pci)
{
	ck_assert_int_eq(PARSE("-k", kernel), CLI_OK);
	ck_assert_uint_eq(cfg.nr_devices, 0);
	ck_assert_int_eq(cfg.default_transport, TRANSPORT_DEFAULT);
}
END_TEST

START_TEST(device_option_is_repeatable_with_transports)
{
	ck_assert_int_eq(PARSE("-k", kernel, "--device", "rng",
			       "--device", "rng,transport=mmio",
			       "--device=rng,transport=pci-legacy",
			       "--device", "rng,transport=pci-transitional",
			       "--device", "rng,transport=pci"),
			 CLI_OK);
	ck_assert_uint_eq(cfg.nr_devices, 5);
	ck_assert_ptr_eq(cfg.devices[0].kind, devices_find_kind("rng"));
	ck_assert_str_eq(cfg.devices[0].kind->name, "rng");
	ck_assert_int_eq(cfg.devices[0].transport, TRANSPORT_DEFAULT);
	ck_assert_int_eq(cfg.devices[1].transport, TRANSPORT_MMIO);
	ck_assert_int_eq(cfg.devices[2].transport, TRANSPORT_PCI_LEGACY);
	ck_assert_int_eq(cfg.devices[3].transport, TRANSPORT_PCI_TRANSITIONAL);
	ck_assert_int_eq(cfg.devices[4].transport, TRANSPORT_PCI);
	ck_assert_uint_eq(cfg.devices[1].nr_params, 0);
}
END_TEST

START_TEST(transport_option_sets_the_default)
{
	ck_assert_int_eq(PARSE("-k", kernel, "--transport", "mmio", "--device",
			       "rng"), CLI_OK);
	ck_assert_int_eq(cfg.default_transport, TRANSPORT_MMIO);
	ck_assert_int_eq(PARSE("-k", kernel, "--transport=pci-legacy"), CLI_OK);
	ck_assert_int_eq(cfg.default_transport, TRANSPORT_PCI_LEGACY);
	ck_assert_error(PARSE("-k", kernel, "--transport", "ccw"), "--transport");
	ck_assert_msg(strstr(err, "ccw") != NULL, "%s", err);
}
END_TEST

START_TEST(bad_device_values)
{
	ck_assert_error(PARSE("-k", kernel, "--device", "floppy"), "--device");
	ck_assert_msg(strstr(err, "floppy") && strstr(err, "rng"), "%s", err);
	ck_assert_error(PARSE("-k", kernel, "--device", ""), "--device");
	ck_assert_error(PARSE("-k", kernel, "--device", "rng,transport=usb"),
			"usb");
	ck_assert_error(PARSE("-k", kernel, "--device", "rng,transport"),
			"--device");
	ck_assert_error(PARSE("-k", kernel, "--device", "rng,=x"), "--device");
	ck_assert_error(PARSE("-k", kernel, "--device", "rng,"), "--device");
	/* rng takes no parameters of its own. */
	ck_assert_error(PARSE("-k", kernel, "--device", "rng,path=/dev/null"),
			"path");
	ck_assert_error(PARSE("-k", kernel, "--device"), "--device");
}
END_TEST

START_TEST(too_many_devices_refused)
{
	const char *args[2 + 2 * (VM_CONFIG_MAX_DEVICES + 1) + 1];
	int n = 0;

	args[n++] = "-k";
	args[n++] = kernel;
	for (int i = 0; i < VM_CONFIG_MAX_DEVICES; i++) {
		args[n++] = "--device";
		args[n++] = "rng";
	}
	args[n] = NULL;
	ck_assert_int_eq(parse_argv(args), CLI_OK);
	ck_assert_uint_eq(cfg.nr_devices, VM_CONFIG_MAX_DEVICES);
	args[n++] = "--device";
	args[n++] = "rng";
	args[n] = NULL;
	ck_assert_error(parse_argv(args), "--device");
}
END_TEST

START_TEST(device_config_can_be_copied)
{
	struct vm_config copy;

	ck_assert_int_eq(PARSE("-k", kernel, "--device", "rng,transport=mmio"),
			 CLI_OK);
	copy = cfg;
	memset(&cfg, 0, sizeof(cfg));
	ck_assert_int_eq(copy.devices[0].transport, TRANSPORT_MMIO);
	ck_assert_ptr_null(device_config_param(&copy.devices[0], "transport"));
}
END_TEST

START_TEST(mmio_legacy_transport_is_parsed)
{
	ck_assert_int_eq(PARSE("-k", kernel, "--transport", "mmio-legacy",
			       "--device", "rng", "--device",
			       "console,transport=mmio"), CLI_OK);
	ck_assert_int_eq(cfg.default_transport, TRANSPORT_MMIO_LEGACY);
	ck_assert_int_eq(cfg.devices[0].transport, TRANSPORT_DEFAULT);
	ck_assert_int_eq(cfg.devices[1].transport, TRANSPORT_MMIO);
	ck_assert_error(PARSE("-k", kernel, "--transport", "mmio-1"),
			"mmio-1");
}
END_TEST

START_TEST(usage_mentions_device_options)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	cli_run_usage(f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "--device"));
	ck_assert_ptr_nonnull(strstr(buf, "--transport"));
	free(buf);
}
END_TEST

/* ---- -d / --disk (virtio-blk) ---- */

START_TEST(disk_option_is_shorthand_for_blk_device)
{
	char arg[4400];
	const struct device_config *dc;

	snprintf(arg, sizeof(arg), "%s,ro,format=qcow2,serial=abc,cache=none",
		 initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", kernel, "--disk", arg,
			       "--device", "rng"), CLI_OK);
	ck_assert_uint_eq(cfg.nr_devices, 3);
	dc = &cfg.devices[0];
	ck_assert_ptr_eq(dc->kind, devices_find_kind("blk"));
	ck_assert_str_eq(device_config_param(dc, "path"), kernel);
	ck_assert_ptr_null(device_config_param(dc, "ro"));
	dc = &cfg.devices[1];
	ck_assert_str_eq(dc->kind->name, "blk");
	ck_assert_str_eq(device_config_param(dc, "path"), initrd);
	ck_assert_str_eq(device_config_param(dc, "ro"), "on");
	ck_assert_str_eq(device_config_param(dc, "format"), "qcow2");
	ck_assert_str_eq(device_config_param(dc, "serial"), "abc");
	ck_assert_str_eq(device_config_param(dc, "cache"), "none");
	ck_assert_str_eq(cfg.devices[2].kind->name, "rng");
	/* The long form is the same device. */
	snprintf(arg, sizeof(arg),
		 "blk,path=%s,queues=4,poll=0,transport=mmio", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "--device", arg), CLI_OK);
	ck_assert_str_eq(device_config_param(&cfg.devices[0], "queues"), "4");
	ck_assert_str_eq(device_config_param(&cfg.devices[0], "poll"), "0");
	ck_assert_int_eq(cfg.devices[0].transport, TRANSPORT_MMIO);
}
END_TEST

START_TEST(bad_disk_values)
{
	char arg[4400];

	ck_assert_int_eq(PARSE("-k", kernel, "-d", missing), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(err, missing));
	snprintf(arg, sizeof(arg), "%s,format=vmdk", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "format=vmdk"));
	snprintf(arg, sizeof(arg), "%s,cache=sometimes", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "cache=sometimes"));
	snprintf(arg, sizeof(arg), "%s,serial=123456789012345678901", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "at most 20"));
	snprintf(arg, sizeof(arg), "%s,colour=blue", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "colour"));
	snprintf(arg, sizeof(arg), "%s,queues=99", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	snprintf(arg, sizeof(arg), "%s,poll=2000000", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "poll=2000000"));
	snprintf(arg, sizeof(arg), "%s,poll=", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_ERROR);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", ""), CLI_ERROR);
	ck_assert_int_eq(PARSE("-k", kernel, "-d"), CLI_ERROR);
}
END_TEST

/* backing=on|off and shared (bare with -d, like ro) reach the disk's
 * options; every blk parameter fits in one device at once. */
START_TEST(disk_backing_and_shared_options)
{
	char arg[4400];
	struct disk_options o;
	const struct device_config *dc;

	snprintf(arg, sizeof(arg), "%s,ro,shared,backing=off", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_OK);
	dc = &cfg.devices[0];
	ck_assert_str_eq(device_config_param(dc, "shared"), "on");
	ck_assert_str_eq(device_config_param(dc, "backing"), "off");
	ck_assert_int_eq(devices_blk_options(dc, &o, err, sizeof(err)), 0);
	ck_assert(o.read_only && o.shared && o.no_backing);
	ck_assert_int_eq(o.format, DISK_FORMAT_AUTO);

	/* Defaults: backing files followed, nothing shared. */
	ck_assert_int_eq(PARSE("-k", kernel, "-d", initrd), CLI_OK);
	ck_assert_int_eq(devices_blk_options(&cfg.devices[0], &o, err,
					     sizeof(err)), 0);
	ck_assert(!o.read_only && !o.shared && !o.no_backing && !o.direct);

	snprintf(arg, sizeof(arg),
		 "blk,path=%s,ro=on,format=qcow2,serial=s,cache=none,queues=2,"
		 "poll=0,backing=on,shared=off,transport=mmio", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "--device", arg), CLI_OK);
	dc = &cfg.devices[0];
	ck_assert_uint_eq(dc->nr_params, 9);
	ck_assert_int_eq(devices_blk_options(dc, &o, err, sizeof(err)), 0);
	ck_assert(o.read_only && !o.shared && !o.no_backing && o.direct);
	ck_assert_int_eq(o.format, DISK_FORMAT_QCOW2);
}
END_TEST

START_TEST(bad_backing_and_shared_values)
{
	char arg[4400];
	struct disk_options o;

	snprintf(arg, sizeof(arg), "%s,backing=maybe", initrd);
	ck_assert_error(PARSE("-k", kernel, "-d", arg), "backing=maybe");
	snprintf(arg, sizeof(arg), "blk,path=%s,shared=yes", initrd);
	ck_assert_error(PARSE("-k", kernel, "--device", arg), "shared=yes");
	/* shared is for a read-only disk: a writable one locks the whole
	 * image, which nobody can share. */
	snprintf(arg, sizeof(arg), "%s,shared", initrd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_OK);
	ck_assert_int_eq(devices_blk_options(&cfg.devices[0], &o, err,
					     sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "shared needs ro") && strstr(err, initrd),
		      "message: %s", err);
}
END_TEST

/* A disk that cannot be opened: "disk 'PATH': REASON", and when a
 * backing chain's reason is longer than the message can be, its middle
 * gives way, not its end (the reason itself). */
START_TEST(blk_errors_name_the_disk_and_keep_the_reason)
{
	const struct device_kind *blk = devices_find_kind("blk");
	char arg[4400], fifo[PATH_MAX + 16], *deep, *a, *b, *cmd;
	struct virtio_device *dev = NULL;
	char small[300];

	snprintf(fifo, sizeof(fifo), "%s/disk.fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	snprintf(arg, sizeof(arg), "%s,ro", fifo);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", arg), CLI_OK);
	ck_assert_int_lt(blk->create(&cfg.devices[0], NULL, "blk0", &dev, err,
				     sizeof(err)), 0);
	ck_assert_ptr_null(dev);
	snprintf(arg, sizeof(arg), "disk '%s': is a FIFO", fifo);
	ck_assert_str_eq(err, arg);
	unlink(fifo);

	ck_assert_int_gt(asprintf(&deep, "%s/%0200d", dir, 0), 0);
	ck_assert_int_eq(mkdir(deep, 0755), 0);
	/* The top image's path must fit in -d; the chain's need not. */
	ck_assert_int_gt(asprintf(&a, "%s/top.qcow2", dir), 0);
	ck_assert_int_gt(asprintf(&b, "%s/mid-%060d.qcow2", deep, 0), 0);
	ck_assert_int_gt(asprintf(&cmd,
		 "qemu-img create -q -f qcow2 -u -b '%s/gone' -F qcow2 '%s' 16M"
		 " && qemu-img create -q -f qcow2 -u -b '%s' -F qcow2 '%s' 16M",
		 deep, b, b, a), 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	ck_assert_int_eq(PARSE("-k", kernel, "-d", a), CLI_OK);
	ck_assert_int_lt(blk->create(&cfg.devices[0], NULL, "blk0", &dev,
				     small, sizeof(small)), 0);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_msg(strncmp(small, "disk '", 6) == 0 &&
		      strstr(small, " ... ") &&
		      strstr(small, "/gone': cannot open: No such file or "
				    "directory"),
		      "message: %s", small);
	ck_assert_int_gt(asprintf(&cmd, "rm -rf '%s' '%s'", deep, a), 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	free(a);
	free(b);
	free(deep);
}
END_TEST

START_TEST(usage_mentions_disk_option)
{
	char buf[4096] = "";
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	cli_run_usage(f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "--disk PATH"));
	ck_assert_ptr_nonnull(strstr(buf, "backing=on|off"));
	ck_assert_ptr_nonnull(strstr(buf, "[,shared]"));
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("run");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults_with_only_a_kernel);
	tcase_add_test(tc, short_options_land_in_config);
	tcase_add_test(tc, attached_short_values);
	tcase_add_test(tc, long_options_land_in_config);
	tcase_add_test(tc, long_options_with_equals);
	tcase_add_test(tc, console_serial_and_last_option_wins);
	tcase_add_test(tc, missing_kernel);
	tcase_add_test(tc, nonexistent_kernel_names_the_file);
	tcase_add_test(tc, nonexistent_initrd_names_the_file);
	tcase_add_test(tc, nonexistent_hugetlb_dir_names_it);
	tcase_add_test(tc, bad_memory_values);
	tcase_add_test(tc, bad_cpus_values);
	tcase_add_test(tc, bad_console_value);
	tcase_add_test(tc, bad_serial_values);
	tcase_add_test(tc, bad_reboot_value);
	tcase_add_test(tc, bad_name_values);
	tcase_add_test(tc, overlong_cmdline_refused);
	tcase_add_test(tc, unknown_options);
	tcase_add_test(tc, unexpected_argument);
	tcase_add_test(tc, missing_values);
	tcase_add_test(tc, help_wins);
	tcase_add_test(tc, usage_mentions_options);
	tcase_add_test(tc, repeated_parsing_resets_getopt);
	tcase_add_test(tc, result_codes);
	tcase_add_test(tc, devices_default_to_none_and_pci);
	tcase_add_test(tc, device_option_is_repeatable_with_transports);
	tcase_add_test(tc, transport_option_sets_the_default);
	tcase_add_test(tc, bad_device_values);
	tcase_add_test(tc, too_many_devices_refused);
	tcase_add_test(tc, device_config_can_be_copied);
	tcase_add_test(tc, mmio_legacy_transport_is_parsed);
	tcase_add_test(tc, usage_mentions_device_options);
	tcase_add_test(tc, disk_option_is_shorthand_for_blk_device);
	tcase_add_test(tc, bad_disk_values);
	tcase_add_test(tc, disk_backing_and_shared_options);
	tcase_add_test(tc, bad_backing_and_shared_values);
	tcase_add_test(tc, blk_errors_name_the_disk_and_keep_the_reason);
	tcase_add_test(tc, usage_mentions_disk_option);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(cli_suite)
