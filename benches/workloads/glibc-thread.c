/* glibc-thread (after glibc's benchtests/bench-malloc-thread.c): every thread replaces
 * random blocks of a 1000-block working set with new ones of random size (4 B..32 KiB,
 * with small sizes far more likely), for a fixed number of iterations. */
#include "common.h"

#define WS 1000
static long g_iters;

static size_t pick_size(rng_t *r) {
    /* Heavy towards small sizes, as glibc's benchmark's distribution. */
    uint64_t x = rng_next(r) % 1000;
    if (x < 800) return rng_range(r, 4, 128);
    if (x < 950) return rng_range(r, 129, 1024);
    if (x < 995) return rng_range(r, 1025, 8192);
    return rng_range(r, 8193, 32768);
}

static void *worker(void *arg) {
    rng_t r = rng_seed((uint64_t)(long)arg + 11);
    void **ws = xmalloc(sizeof(void *) * WS);
    memset(ws, 0, sizeof(void *) * WS);
    for (long i = 0; i < g_iters; i++) {
        size_t k = rng_next(&r) % WS;
        free(ws[k]);
        ws[k] = xmalloc(pick_size(&r));
    }
    for (int k = 0; k < WS; k++) free(ws[k]);
    free(ws);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    g_iters = scaled(24000000) / g_threads;
    run_threads(g_threads, worker);
    return 0;
}
