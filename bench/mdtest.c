/*
 * aspfs-mdtest: a small mdtest-like metadata benchmark for bench/run.
 *
 * Each of T threads works in its own directory DIR/t<i>/ (like mdtest -u)
 * on N files, phase by phase; all threads start a phase together (barrier)
 * and the phase's wall time runs until the last thread is done:
 *
 *   create   open(O_CREAT|O_EXCL|O_WRONLY) + write SIZE bytes + close
 *   stat     stat() of every file, PASSES times
 *   readdir  opendir/readdir/closedir of the thread's directory (N entries),
 *            PASSES times; counted in entries returned
 *   rename   rename f.<k> -> r.<k> in the same directory
 *   unlink   unlink every file
 *
 * Time caps (for quick runs on a slow file system): -T SECS stops each
 * thread's create phase after SECS seconds (the later phases then work on
 * the files it made); -S SECS stops the stat and readdir phases after SECS
 * seconds (readdir after at least one full pass). Rename and unlink always
 * go over every file made. "capped" in the output says whether a cap hit.
 *
 * Output: one JSON document on stdout. On the first failing call: a message
 * on stderr and exit 1.
 *
 * Build: cc -O2 -pthread -o aspfs-mdtest mdtest.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { PH_CREATE, PH_STAT, PH_READDIR, PH_RENAME, PH_UNLINK, PH_COUNT };
static const char *phase_names[PH_COUNT] = {"create", "stat", "readdir",
                                            "rename", "unlink"};

static const char *g_dir;
static int g_threads = 1;
static long g_files = 1000;
static long g_size = 1024;
static int g_passes = 3;
static double g_create_cap = 0;        /* seconds, 0 = none */
static double g_scan_cap = 0;
static int g_capped;
static pthread_barrier_t g_barrier;
static char *g_buf;
static long g_ops[PH_COUNT];           /* total ops per phase (all threads) */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "aspfs-mdtest: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void add_ops(int phase, long n, int capped)
{
	pthread_mutex_lock(&g_lock);
	g_ops[phase] += n;
	if (capped)
		g_capped = 1;
	pthread_mutex_unlock(&g_lock);
}

/* true when a phase that started at t0 has used up its cap */
static int over(double t0, double cap)
{
	return cap > 0 && now() - t0 >= cap;
}

static void *worker(void *arg)
{
	long id = (long)arg;
	char dir[4096], p[4352], q[4352];
	struct stat st;
	long n = g_files;     /* files this thread made */
	int capped = 0;
	double t0;

	snprintf(dir, sizeof dir, "%s/t%ld", g_dir, id);

	/* create */
	pthread_barrier_wait(&g_barrier);
	t0 = now();
	for (long k = 0; k < g_files; k++) {
		if ((k & 15) == 0 && k > 0 && over(t0, g_create_cap)) {
			n = k;
			capped = 1;
			break;
		}
		snprintf(p, sizeof p, "%s/f.%ld", dir, k);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die("open", p);
		long done = 0;
		while (done < g_size) {
			ssize_t w = write(fd, g_buf + done, g_size - done);
			if (w < 0)
				die("write", p);
			done += w;
		}
		if (close(fd) != 0)
			die("close", p);
	}
	add_ops(PH_CREATE, n, capped);
	pthread_barrier_wait(&g_barrier);

	/* stat */
	pthread_barrier_wait(&g_barrier);
	long stats = 0;
	capped = 0;
	t0 = now();
	for (int pass = 0; pass < g_passes && !capped; pass++)
		for (long k = 0; k < n; k++) {
			if ((stats & 63) == 0 && stats > 0 && over(t0, g_scan_cap)) {
				capped = 1;
				break;
			}
			stats++;
			snprintf(p, sizeof p, "%s/f.%ld", dir, k);
			if (stat(p, &st) != 0)
				die("stat", p);
			if (st.st_size != g_size) {
				errno = EIO;
				die("stat (wrong size)", p);
			}
		}
	add_ops(PH_STAT, stats, capped);
	pthread_barrier_wait(&g_barrier);

	/* readdir */
	pthread_barrier_wait(&g_barrier);
	long entries = 0;
	capped = 0;
	t0 = now();
	for (int pass = 0; pass < g_passes; pass++) {
		if (pass > 0 && over(t0, g_scan_cap)) {
			capped = 1;
			break;
		}
		DIR *d = opendir(dir);
		if (!d)
			die("opendir", dir);
		long seen = 0;
		struct dirent *de;
		errno = 0;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.' &&
			    (de->d_name[1] == 0 ||
			     (de->d_name[1] == '.' && de->d_name[2] == 0)))
				continue;
			seen++;
		}
		if (errno != 0)
			die("readdir", dir);
		closedir(d);
		if (seen != n) {
			fprintf(stderr,
			        "aspfs-mdtest: readdir %s: %ld entries, expected %ld\n",
			        dir, seen, n);
			exit(1);
		}
		entries += seen;
	}
	add_ops(PH_READDIR, entries, capped);
	pthread_barrier_wait(&g_barrier);

	/* rename */
	pthread_barrier_wait(&g_barrier);
	for (long k = 0; k < n; k++) {
		snprintf(p, sizeof p, "%s/f.%ld", dir, k);
		snprintf(q, sizeof q, "%s/r.%ld", dir, k);
		if (rename(p, q) != 0)
			die("rename", p);
	}
	add_ops(PH_RENAME, n, 0);
	pthread_barrier_wait(&g_barrier);

	/* unlink */
	pthread_barrier_wait(&g_barrier);
	for (long k = 0; k < n; k++) {
		snprintf(q, sizeof q, "%s/r.%ld", dir, k);
		if (unlink(q) != 0)
			die("unlink", q);
	}
	add_ops(PH_UNLINK, n, 0);
	pthread_barrier_wait(&g_barrier);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: aspfs-mdtest -d DIR [-t THREADS] [-n FILES_PER_THREAD]\n"
	        "                    [-s FILE_SIZE] [-p PASSES] [-T CREATE_SECS]\n"
	        "                    [-S SCAN_SECS]\n"
	        "PASSES: how often the stat and readdir phases go over the files\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "d:t:n:s:p:T:S:h")) != -1) {
		switch (c) {
		case 'd': g_dir = optarg; break;
		case 't': g_threads = atoi(optarg); break;
		case 'n': g_files = atol(optarg); break;
		case 's': g_size = atol(optarg); break;
		case 'p': g_passes = atoi(optarg); break;
		case 'T': g_create_cap = atof(optarg); break;
		case 'S': g_scan_cap = atof(optarg); break;
		default: usage();
		}
	}
	if (!g_dir || g_threads < 1 || g_files < 1 || g_size < 0 || g_passes < 1)
		usage();

	g_buf = malloc(g_size > 0 ? g_size : 1);
	if (!g_buf)
		return 1;
	for (long i = 0; i < g_size; i++)
		g_buf[i] = (char)('a' + i % 26);

	char p[4352];
	for (int i = 0; i < g_threads; i++) {
		snprintf(p, sizeof p, "%s/t%d", g_dir, i);
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			die("mkdir", p);
	}

	pthread_barrier_init(&g_barrier, NULL, g_threads + 1);
	pthread_t *tids = calloc(g_threads, sizeof *tids);
	for (long i = 0; i < g_threads; i++)
		if (pthread_create(&tids[i], NULL, worker, (void *)i) != 0) {
			fprintf(stderr, "aspfs-mdtest: pthread_create failed\n");
			return 1;
		}

	double secs[PH_COUNT];
	for (int ph = 0; ph < PH_COUNT; ph++) {
		pthread_barrier_wait(&g_barrier);
		double t0 = now();
		pthread_barrier_wait(&g_barrier);
		secs[ph] = now() - t0;
	}
	for (int i = 0; i < g_threads; i++)
		pthread_join(tids[i], NULL);

	for (int i = 0; i < g_threads; i++) {
		snprintf(p, sizeof p, "%s/t%d", g_dir, i);
		if (rmdir(p) != 0)
			die("rmdir", p);
	}

	printf("{\"threads\": %d, \"files_per_thread\": %ld, \"file_size\": %ld, "
	       "\"passes\": %d, \"capped\": %s",
	       g_threads, g_files, g_size, g_passes, g_capped ? "true" : "false");
	for (int ph = 0; ph < PH_COUNT; ph++) {
		double s = secs[ph] > 0 ? secs[ph] : 1e-9;
		printf(", \"%s\": {\"ops\": %ld, \"seconds\": %.6f, "
		       "\"ops_per_s\": %.1f}",
		       phase_names[ph], g_ops[ph], secs[ph], g_ops[ph] / s);
	}
	printf("}\n");
	return 0;
}
