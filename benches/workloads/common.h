/* Shared helpers of the gomalloc benchmark workloads (written for this project).
 *
 * Every workload is a fixed amount of work: `PROGRAM [SCALE [THREADS]]`, where SCALE
 * (default 1.0) multiplies the iteration counts and THREADS (default 2) is the thread
 * count of multi-threaded workloads. The bench tool measures wall time, CPU time and peak
 * RSS from outside (wait4). Compile with -fno-builtin so that GCC keeps malloc/free pairs.
 */
#ifndef GOMALLOC_BENCH_COMMON_H
#define GOMALLOC_BENCH_COMMON_H
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double g_scale = 1.0;
static int g_threads = 2;

static inline void parse_args(int argc, char **argv) {
    if (argc > 1) g_scale = atof(argv[1]);
    if (argc > 2) g_threads = atoi(argv[2]);
    if (g_scale <= 0) g_scale = 1.0;
    if (g_threads < 1) g_threads = 1;
}

/* n scaled by SCALE, at least 1. */
static inline long scaled(long n) {
    long r = (long)(n * g_scale);
    return r < 1 ? 1 : r;
}

/* xorshift64*: a small, fast, per-thread random generator. */
typedef struct { uint64_t s; } rng_t;
static inline uint64_t rng_next(rng_t *r) {
    uint64_t x = r->s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}
static inline rng_t rng_seed(uint64_t seed) {
    rng_t r = { seed * 0x9E3779B97F4A7C15ULL + 1 };
    rng_next(&r);
    return r;
}
/* Uniform in [lo, hi]. */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(r) % (hi - lo + 1));
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) { fprintf(stderr, "out of memory (%zu bytes)\n", n); exit(1); }
    return p;
}

/* Touch the first bytes of a block so that the allocation is not free of cost to use. */
static inline void touch(void *p, size_t n) {
    memset(p, 0xA5, n < 64 ? n : 64);
}

/* Runs f(i) on `n` threads and joins them. */
static inline void run_threads(int n, void *(*f)(void *)) {
    pthread_t *t = xmalloc(sizeof(pthread_t) * (size_t)n);
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, f, (void *)i) != 0) { perror("pthread_create"); exit(1); }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    free(t);
}

/* Resident set size now, in KiB (from /proc/self/statm). */
static inline long rss_now_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) { if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0; fclose(f); }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Defeats dead-store elimination of checksums. */
static volatile uint64_t g_sink;
#endif
