// memcheck: the lab guest's memory checker, run as the guest's last process.
//
// It stamps MB MiB of memory with a seeded pattern (each 4 KiB page holds a
// sequence derived from the seed, its index and its generation), then every
// second rewrites DIRTY pages with a new generation and verifies every page,
// and prints one heartbeat line on its console (hvc0):
//
//	HB <n> up=<seconds> badpages=<total> bad_now=<this pass> vbd=<ok> vbd_err=<errors> verify_ms=<ms>
//
// badpages counts every page found wrong since boot (a wrong page is
// reported once with its details and stamped again). A child process keeps
// writing and reading back a block of the PV disk (O_DIRECT) so a frontend
// that failed to reconnect after a move shows as a vbd counter that stops.
//
// Parameters come from the kernel command line: memcheck.mb= (default: 3/4
// of MemAvailable, most of what the kernel leaves), memcheck.seed=,
// memcheck.dirty=, memcheck.disk=. Built static (see parts/guest.sh).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static uint64_t seed = 0x5eed;

// fill writes page p's pattern for generation g (a 64-bit LCG per page).
static void fill(uint64_t *w, uint64_t p, uint32_t g) {
	uint64_t x = seed ^ (p * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)g << 40) ^ 1;
	for (int i = 0; i < WORDS; i++) {
		w[i] = x;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	}
}

// check returns the index of the first wrong word of page p, or -1.
static int check(const uint64_t *w, uint64_t p, uint32_t g) {
	uint64_t x = seed ^ (p * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)g << 40) ^ 1;
	for (int i = 0; i < WORDS; i++) {
		if (w[i] != x)
			return i;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	}
	return -1;
}

static double now(clockid_t c) {
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

// param reads "memcheck.NAME=" from the kernel command line.
static const char *param(const char *cmdline, const char *name, const char *def) {
	static char val[256];
	char key[64];
	snprintf(key, sizeof key, "memcheck.%s=", name);
	const char *s = strstr(cmdline, key);
	if (!s)
		return def;
	s += strlen(key);
	size_t n = strcspn(s, " \n");
	if (n >= sizeof val)
		n = sizeof val - 1;
	memcpy(val, s, n);
	val[n] = 0;
	return val;
}

// disk loops forever: write a numbered block, read it back, count.
static void disk(const char *path, volatile uint64_t *ok, volatile uint64_t *err) {
	int fd = -1;
	void *buf, *back;
	if (posix_memalign(&buf, PAGE, PAGE) || posix_memalign(&back, PAGE, PAGE))
		_exit(1);
	for (uint64_t n = 0;; n++) {
		if (fd < 0 && (fd = open(path, O_RDWR | O_DIRECT | O_SYNC)) < 0) {
			(*err)++;
			sleep(1);
			continue;
		}
		off_t off = (off_t)(n % 256) * PAGE;
		memset(buf, (int)(n & 0xff), PAGE);
		memcpy(buf, &n, sizeof n);
		if (pwrite(fd, buf, PAGE, off) != PAGE || pread(fd, back, PAGE, off) != PAGE ||
		    memcmp(buf, back, PAGE) != 0)
			(*err)++;
		else
			(*ok)++;
		usleep(250000);
	}
}

// available_mb returns MemAvailable from /proc/meminfo in MiB, or 32.
static uint64_t available_mb(void) {
	char line[256];
	unsigned long long kb = 32 * 1024;
	FILE *f = fopen("/proc/meminfo", "r");
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb / 1024;
}

int main(void) {
	char cmdline[4096] = "";
	FILE *f = fopen("/proc/cmdline", "r");
	if (f) {
		if (!fgets(cmdline, sizeof cmdline, f))
			cmdline[0] = 0;
		fclose(f);
	}
	uint64_t avail = available_mb(), mb = strtoull(param(cmdline, "mb", "0"), 0, 0);
	if (mb == 0)
		mb = avail * 3 / 4;
	seed = strtoull(param(cmdline, "seed", "24301"), 0, 0);
	uint64_t dirty = strtoull(param(cmdline, "dirty", "512"), 0, 0);
	const char *diskpath = param(cmdline, "disk", "/dev/xvda");
	char diskbuf[256];
	snprintf(diskbuf, sizeof diskbuf, "%s", diskpath);
	setvbuf(stdout, NULL, _IOLBF, 0);

	volatile uint64_t *ctr = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctr == MAP_FAILED)
		return 1;
	if (access(diskbuf, F_OK) == 0 && fork() == 0)
		disk(diskbuf, &ctr[0], &ctr[1]);

	uint64_t pages = mb * 1024 * 1024 / PAGE;
	uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint32_t *gen = calloc(pages, sizeof *gen);
	if (mem == MAP_FAILED || !gen) {
		printf("memcheck: cannot allocate %llu MiB: %s\n", (unsigned long long)mb, strerror(errno));
		return 1;
	}
	for (uint64_t p = 0; p < pages; p++)
		fill(mem + p * WORDS, p, 0);
	printf("memcheck: start MemAvailable=%llu MiB mb=%llu pages=%llu seed=%llu dirty=%llu disk=%s\n",
	       (unsigned long long)avail, (unsigned long long)mb, (unsigned long long)pages, (unsigned long long)seed,
	       (unsigned long long)dirty, diskbuf);

	uint64_t rng = seed * 2654435761u + 7, badtotal = 0;
	double next = now(CLOCK_MONOTONIC);
	for (uint64_t n = 1;; n++) {
		for (uint64_t i = 0; i < dirty; i++) {
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			uint64_t p = rng % pages;
			fill(mem + p * WORDS, p, ++gen[p]);
		}
		double t0 = now(CLOCK_MONOTONIC);
		uint64_t bad = 0;
		for (uint64_t p = 0; p < pages; p++) {
			int i = check(mem + p * WORDS, p, gen[p]);
			if (i < 0)
				continue;
			if (badtotal + bad < 20)
				printf("BAD page=%llu gen=%u word=%d got=%#llx\n", (unsigned long long)p,
				       gen[p], i, (unsigned long long)mem[p * WORDS + i]);
			bad++;
			fill(mem + p * WORDS, p, gen[p]);
		}
		badtotal += bad;
		double t1 = now(CLOCK_MONOTONIC);
		printf("HB %llu up=%.1f badpages=%llu bad_now=%llu vbd=%llu vbd_err=%llu verify_ms=%d\n",
		       (unsigned long long)n, t1, (unsigned long long)badtotal, (unsigned long long)bad,
		       (unsigned long long)ctr[0], (unsigned long long)ctr[1], (int)((t1 - t0) * 1000));
		next += 1;
		double wait = next - now(CLOCK_MONOTONIC);
		if (wait < 0)
			next = now(CLOCK_MONOTONIC); // late: do not burst to catch up
		else
			usleep((useconds_t)(wait * 1e6));
	}
}
