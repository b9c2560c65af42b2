/*
 * How much this machine's wake-ups, not a proxy's work, decide one connection on two cores.
 *
 * Three processes pass one message around, as wrk -c1, a proxy and a backend do: the client
 * writes to the proxy, the proxy to the backend, the backend back, the proxy back to the
 * client. Each one blocks in read() between its turns, so every turn wakes a sleeping process.
 * After each wake-up a process spins for a set time, its "work": the proxy for each time of
 * the list given, the client and the backend for 5 us. For each proxy time the program runs
 * several trials and prints the round trips per second of each (lowest, median, highest) and
 * how often, over all trials, the proxy was woken on the CPU of the process that woke it.
 *
 * Build and run (bench/wakeups.sh does both):
 *   cc -O2 -o wakeups bench/wakeups.c && ./wakeups 2 4 8 16
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TRIALS 7
#define TRIAL_SECONDS 1.0
#define OTHERS_US 5.0
#define STOP 255

struct counts {
	long woken, same_cpu;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void spin(double us)
{
	double end = now() + us * 1e-6;
	while (now() < end)
		;
}

/* Reads one message (the writer's CPU, or STOP); counts whether it woke us on that CPU. */
static int receive(int fd, struct counts *c)
{
	unsigned char b;
	if (read(fd, &b, 1) != 1 || b == STOP)
		return 0;
	c->woken++;
	if (sched_getcpu() == b)
		c->same_cpu++;
	return 1;
}

static void send_msg(int fd, int stop)
{
	unsigned char b = stop ? STOP : (unsigned char)sched_getcpu();
	if (write(fd, &b, 1) != 1)
		exit(1);
}

/* One trial: round trips per second with the proxy spinning proxy_us per turn. */
static double trial(double proxy_us, struct counts *proxy)
{
	int client[2], backend[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, client) || socketpair(AF_UNIX, SOCK_STREAM, 0, backend)) {
		perror("socketpair");
		exit(1);
	}
	if (fork() == 0) {
		struct counts c = {0, 0};
		while (receive(backend[1], &c)) {
			spin(OTHERS_US);
			send_msg(backend[1], 0);
		}
		_exit(0);
	}
	if (fork() == 0) {
		for (;;) {
			if (!receive(client[1], proxy)) {
				send_msg(backend[0], 1);
				break;
			}
			spin(proxy_us);
			send_msg(backend[0], 0);
			if (!receive(backend[0], proxy))
				break;
			spin(proxy_us);
			send_msg(client[1], 0);
		}
		_exit(0);
	}
	struct counts c = {0, 0};
	long n = 0;
	double end = now() + TRIAL_SECONDS;
	while (now() < end) {
		spin(OTHERS_US);
		send_msg(client[0], 0);
		if (!receive(client[0], &c))
			break;
		n++;
	}
	send_msg(client[0], 1);
	while (wait(NULL) > 0)
		;
	close(client[0]), close(client[1]), close(backend[0]), close(backend[1]);
	return n / TRIAL_SECONDS;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROXY_US...\n", argv[0]);
		return 2;
	}
	/* The proxy's counts, shared with the forked proxy process. */
	struct counts *proxy = mmap(NULL, sizeof *proxy, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (proxy == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	printf("proxy work  round trips/s: lowest  median  highest   proxy woken on its waker's cpu\n");
	for (int i = 1; i < argc; i++) {
		double us = atof(argv[i]), rates[TRIALS];
		proxy->woken = proxy->same_cpu = 0;
		for (int t = 0; t < TRIALS; t++)
			rates[t] = trial(us, proxy);
		qsort(rates, TRIALS, sizeof rates[0], by_value);
		printf("%7.1f us %21.0f %7.0f %8.0f %20.0f %%\n", us, rates[0], rates[TRIALS / 2],
		       rates[TRIALS - 1], 100.0 * proxy->same_cpu / (proxy->woken ? proxy->woken : 1));
	}
	return 0;
}
