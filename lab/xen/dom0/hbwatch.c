// hbwatch: follows every guest console log in a directory (xenconsoled
// --log=guest writes one file per domain name, so a migrated guest's lines
// continue in another file) and writes each new line with the dom0 wall
// clock in milliseconds:  <ms> <file> <line>. xenconsoled's own timestamps
// have one-second resolution, too coarse for a heartbeat gap.
//
//	hbwatch DIR OUTFILE
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXF 64

struct src {
	char name[256];
	long off;
	char part[4096];
	size_t plen;
};

static long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: hbwatch DIR OUTFILE\n");
		return 2;
	}
	static struct src srcs[MAXF];
	int n = 0;
	FILE *out = fopen(argv[2], "a");
	if (!out)
		return 1;
	setvbuf(out, NULL, _IOLBF, 0);
	for (;;) {
		DIR *d = opendir(argv[1]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (strncmp(e->d_name, "guest-", 6) != 0)
				continue;
			int i;
			for (i = 0; i < n && strcmp(srcs[i].name, e->d_name); i++)
				;
			if (i == n && n < MAXF)
				snprintf(srcs[n++].name, sizeof srcs[0].name, "%s", e->d_name);
		}
		if (d)
			closedir(d);
		for (int i = 0; i < n; i++) {
			char path[512], buf[8192];
			snprintf(path, sizeof path, "%s/%s", argv[1], srcs[i].name);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			fseek(f, srcs[i].off, SEEK_SET);
			size_t got;
			while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
				srcs[i].off += got;
				for (size_t k = 0; k < got; k++) {
					char c = buf[k];
					if (c == '\r')
						continue;
					if (c == '\n' || srcs[i].plen == sizeof srcs[i].part - 1) {
						srcs[i].part[srcs[i].plen] = 0;
						fprintf(out, "%lld %s %s\n", now_ms(), srcs[i].name, srcs[i].part);
						srcs[i].plen = 0;
					} else {
						srcs[i].part[srcs[i].plen++] = c;
					}
				}
			}
			fclose(f);
		}
		usleep(50000);
	}
}
