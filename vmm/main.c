/* kite: git-style subcommands.  `kite run` parses its options into one
 * struct vm_config, builds the VM from it, then only runs it. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

struct command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
	void (*usage)(FILE *out);
};

static int cmd_run(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static void usage_run(FILE *out) { cli_run_usage(out); }
static void usage_version(FILE *out)
{
	fputs("Usage: kite version\nPrint kite's version.\n", out);
}
static void usage_help(FILE *out)
{
	fputs("Usage: kite help [COMMAND]\nDescribe kite or one command.\n", out);
}

static const struct command commands[] = {
	{ "run", "boot a virtual machine", cmd_run, usage_run },
	{ "version", "print the version", cmd_version, usage_version },
	{ "help", "describe a command", cmd_help, usage_help },
};
#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fputs("Usage: kite COMMAND [OPTION]...\n"
	      "Kite runs virtual machines on KVM.\n\nCommands:\n", out);
	for (size_t i = 0; i < NR_COMMANDS; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name,
			commands[i].summary);
	fputs("\nRun 'kite help COMMAND' for a command's options; see kite(1).\n",
	      out);
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NR_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int cmd_version(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		kite_error("version: unexpected argument '%s'", argv[1]);
		return VM_EXIT_USAGE;
	}
	printf("kite %s\n", KITE_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	c = find_command(argv[1]);
	if (!c) {
		kite_error("help: unknown command '%s'", argv[1]);
		return VM_EXIT_USAGE;
	}
	c->usage(stdout);
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	char err[8192] = ""; /* long enough for a backing chain's reason */
	int status;

	switch (cli_parse_run(argc, argv, &cfg, err, sizeof(err))) {
	case CLI_HELP:
		cli_run_usage(stdout);
		return 0;
	case CLI_ERROR:
		kite_error("run: %s", err);
		return VM_EXIT_USAGE;
	case CLI_OK:
		break;
	}

	for (;;) {
		struct vm vm;
		int rc = vm_create(&vm, &cfg, err, sizeof(err));

		if (rc) {
			kite_error("%s", err);
			vm_destroy(&vm);
			/* Unreadable or malformed inputs are usage errors. */
			return vm.bad_input ? VM_EXIT_USAGE : VM_EXIT_FAILURE;
		}
		status = vm_run(&vm);
		if (vm.stop_reason == VM_STOP_RESET &&
		    status == VM_EXIT_OK && cfg.reboot == REBOOT_RESTART) {
			vm_destroy(&vm);
			kite_info("restarting the VM");
			continue;
		}
		vm_destroy(&vm);
		return status;
	}
}

int main(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		usage(stderr);
		return VM_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(1, argv + 1);
	c = find_command(argv[1]);
	if (!c) {
		kite_error("unknown command '%s' (see 'kite help')", argv[1]);
		return VM_EXIT_USAGE;
	}
	return c->run(argc - 1, argv + 1);
}
