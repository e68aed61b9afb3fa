// selftest: the C half of the lab's dom0 self-test (the Go half is
// lab/xen/selftest). For SECONDS it runs at once: copies of a large random
// buffer checked by hash and byte by byte (glibc's vector memcpy), a malloc
// churn whose every block is checked before it is freed (the corruption seen
// in the lab hit glibc's heap), checksummed blocks streamed through
// loopback TCP, and the Xen toolstack itself (xl list, xl info: libxenctrl's
// hypercall buffers) run again and again. It prints one JSON object and
// exits 1 if anything was wrong. Each check runs for SECONDS and at least a
// minimum amount of work (a TCG dom0 on a loaded machine may be very slow).
//
//	selftest [SECONDS] [MB]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double deadline;
static size_t bufsize;
static atomic_long hash_rounds, hash_errors, heap_rounds, heap_errors, tcp_mb, tcp_errors, xl_runs, xl_errors;

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t fnv(const unsigned char *p, size_t n) {
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint64_t xs(uint64_t *s) {
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

static void *hash_loop(void *arg) {
	(void)arg;
	uint64_t *src = malloc(bufsize), *dst = malloc(bufsize), s = 88172645463325252ull;
	size_t words = bufsize / 8;
	for (size_t i = 0; i < words; i++)
		src[i] = xs(&s);
	uint64_t want = fnv((unsigned char *)src, bufsize);
	for (int r = 0; r < 5 || now() < deadline; r++) {
		memcpy(dst, src, bufsize);
		if (memcmp(dst, src, bufsize) != 0 || fnv((unsigned char *)dst, bufsize) != want) {
			atomic_fetch_add(&hash_errors, 1);
			fprintf(stderr, "selftest: buffer copy mismatch\n");
		}
		memset(dst, 0, bufsize);
		atomic_fetch_add(&hash_rounds, 1);
	}
	return NULL;
}

#define NBLK 4096
static void *heap_loop(void *arg) {
	(void)arg;
	static unsigned char *blk[NBLK];
	static size_t len[NBLK];
	uint64_t s = 0x1234567;
	for (int r = 0; r < 5 || now() < deadline; r++) {
		for (int k = 0; k < 100000; k++) {
			int i = xs(&s) % NBLK;
			if (blk[i]) {
				for (size_t j = 0; j < len[i]; j++)
					if (blk[i][j] != (unsigned char)(i + j + len[i])) {
						atomic_fetch_add(&heap_errors, 1);
						fprintf(stderr, "selftest: heap block %d byte %zu wrong\n", i, j);
						break;
					}
				free(blk[i]);
				blk[i] = NULL;
			} else {
				len[i] = 16 + xs(&s) % 8192;
				blk[i] = malloc(len[i]);
				for (size_t j = 0; j < len[i]; j++)
					blk[i][j] = (unsigned char)(i + j + len[i]);
			}
		}
		atomic_fetch_add(&heap_rounds, 1);
	}
	return NULL;
}

#define TCPBLK 65536
static int tcp_port;

static void *tcp_send(void *arg) {
	(void)arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(tcp_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		return NULL;
	uint64_t *b = malloc(TCPBLK), s = 42;
	for (uint64_t seq = 0; seq < 1024 || now() < deadline; seq++) {
		for (size_t i = 2; i < TCPBLK / 8; i++)
			b[i] = xs(&s);
		b[0] = seq;
		b[1] = fnv((unsigned char *)(b + 2), TCPBLK - 16);
		for (size_t off = 0; off < TCPBLK;) {
			ssize_t n = write(fd, (char *)b + off, TCPBLK - off);
			if (n <= 0)
				goto out;
			off += n;
		}
	}
out:
	close(fd);
	free(b);
	return NULL;
}

static void *tcp_recv(void *arg) {
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	uint64_t *b = malloc(TCPBLK);
	for (uint64_t seq = 0;; seq++) {
		size_t off = 0;
		while (off < TCPBLK) {
			ssize_t n = read(fd, (char *)b + off, TCPBLK - off);
			if (n <= 0)
				goto out;
			off += n;
		}
		if (b[0] != seq || b[1] != fnv((unsigned char *)(b + 2), TCPBLK - 16)) {
			atomic_fetch_add(&tcp_errors, 1);
			fprintf(stderr, "selftest: tcp block %llu corrupt\n", (unsigned long long)seq);
		}
		if (seq % 16 == 15)
			atomic_fetch_add(&tcp_mb, 1);
	}
out:
	close(fd);
	free(b);
	return NULL;
}

// run_xl runs `xl ARG` with its output discarded; a crash or failure counts.
static void run_xl(const char *arg) {
	pid_t p = fork();
	if (p == 0) {
		freopen("/dev/null", "w", stdout);
		execlp("xl", "xl", arg, (char *)NULL);
		_exit(127);
	}
	int st;
	waitpid(p, &st, 0);
	atomic_fetch_add(&xl_runs, 1);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		atomic_fetch_add(&xl_errors, 1);
		fprintf(stderr, "selftest: xl %s: status %#x\n", arg, st);
	}
}

int main(int argc, char **argv) {
	double secs = argc > 1 ? atof(argv[1]) : 60;
	bufsize = (size_t)(argc > 2 ? atoi(argv[2]) : 32) << 20;
	double start = now();
	deadline = start + secs;

	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
		perror("selftest: listen");
		return 2;
	}
	tcp_port = ntohs(a.sin_port);
	pthread_t t[4];
	pthread_create(&t[0], NULL, hash_loop, NULL);
	pthread_create(&t[1], NULL, heap_loop, NULL);
	pthread_create(&t[2], NULL, tcp_recv, &lfd);
	pthread_create(&t[3], NULL, tcp_send, NULL);
	for (int r = 0; r < 10 || now() < deadline; r++) {
		run_xl("list");
		run_xl("info");
		usleep(500000);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	printf("{\"hash_rounds\":%ld,\"hash_errors\":%ld,\"heap_rounds\":%ld,\"heap_errors\":%ld,"
	       "\"tcp_mb\":%ld,\"tcp_errors\":%ld,\"xl_runs\":%ld,\"xl_errors\":%ld,\"seconds\":%.1f}\n",
	       hash_rounds, hash_errors, heap_rounds, heap_errors, tcp_mb, tcp_errors, xl_runs, xl_errors,
	       now() - start);
	return hash_errors + heap_errors + tcp_errors + xl_errors ? 1 : 0;
}
