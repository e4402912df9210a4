/* exec-stats: run a command N times; print wall time from exec to exit and
 * the child's peak RSS (median, min, max).  Output is for people: figures,
 * not verdicts.
 *
 * Usage: exec-stats LABEL RUNS EXPECTED_STATUS -- COMMAND [ARG]...
 * A run whose exit status differs from EXPECTED_STATUS is reported and the
 * program exits 1, so a benchmark of a broken VM does not print figures. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void summary(const char *label, const char *unit, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	printf("%-28s median %9.2f %s   min %9.2f   max %9.2f   (%d runs)\n",
	       label, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, unit,
	       v[0], v[n - 1], n);
}

int main(int argc, char **argv)
{
	int runs, expected, first;
	double *ms, *rss;
	char label[128];

	if (argc < 6 || strcmp(argv[4], "--") != 0) {
		fprintf(stderr,
			"usage: exec-stats LABEL RUNS EXPECTED_STATUS -- COMMAND [ARG]...\n");
		return 2;
	}
	runs = atoi(argv[2]);
	expected = atoi(argv[3]);
	first = 5;
	if (runs < 1)
		runs = 1;
	ms = calloc((size_t)runs, sizeof(*ms));
	rss = calloc((size_t)runs, sizeof(*rss));
	if (!ms || !rss)
		return 2;

	for (int i = 0; i < runs; i++) {
		struct timespec t0, t1;
		struct rusage ru;
		int status;
		pid_t pid;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid = fork();
		if (pid == 0) {
			int null = open("/dev/null", O_RDWR);

			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			execvp(argv[first], argv + first);
			_exit(127);
		}
		if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) {
			perror("exec-stats");
			return 2;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != expected) {
			fprintf(stderr,
				"exec-stats: %s: run %d ended with status %d, expected %d\n",
				argv[1], i + 1,
				WIFEXITED(status) ? WEXITSTATUS(status) : -1,
				expected);
			return 1;
		}
		ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			(double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		rss[i] = (double)ru.ru_maxrss / 1024.0; /* KiB → MiB */
	}
	snprintf(label, sizeof(label), "%s wall time", argv[1]);
	summary(label, "ms ", ms, runs);
	snprintf(label, sizeof(label), "%s peak RSS", argv[1]);
	summary(label, "MiB", rss, runs);
	free(ms);
	free(rss);
	return 0;
}
