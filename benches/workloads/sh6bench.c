/* sh6bench / sh8bench (after MicroQuill's SmartHeap benchmarks): every thread allocates
 * runs of blocks of growing sizes and frees them alternately in LIFO and FIFO order,
 * keeping some across passes. With -DSH8 each thread also frees the blocks the previous
 * thread left in a shared handoff slot (sh8bench's cross-thread frees). */
#include "common.h"

#define RUN 2000
static long g_passes;
#ifdef SH8
static void **_Atomic g_handoff[64];
#endif

static void *worker(void *arg) {
    long id = (long)arg;
    rng_t r = rng_seed((uint64_t)id + 3);
    void **blk = xmalloc(sizeof(void *) * RUN);
    void **keep = NULL;
    for (long pass = 0; pass < g_passes; pass++) {
        size_t maxsz = 1 + (size_t)(pass % 10) * 100;
        for (int i = 0; i < RUN; i++) {
            size_t n = 1 + (size_t)i % maxsz + rng_next(&r) % 8;
            blk[i] = xmalloc(n);
            touch(blk[i], n);
        }
        if (pass & 1) {
            for (int i = RUN - 1; i >= 0; i--) if (i % 5) free(blk[i]);
        } else {
            for (int i = 0; i < RUN; i++) if (i % 5) free(blk[i]);
        }
        /* One block in five survives the pass: collect them in a new array. */
        void **survivors = xmalloc(sizeof(void *) * (RUN / 5 + 1));
        int m = 0;
        for (int i = 0; i < RUN; i += 5) survivors[m++] = blk[i];
        survivors[m] = NULL;
#ifdef SH8
        /* Leave them for the next thread; free what the previous one left us. */
        void **prev = __atomic_exchange_n(&g_handoff[(id + 1) % g_threads], survivors, __ATOMIC_ACQ_REL);
        (void)keep;
        if (prev) { for (int i = 0; prev[i]; i++) free(prev[i]); free(prev); }
#else
        if (keep) { for (int i = 0; keep[i]; i++) free(keep[i]); free(keep); }
        keep = survivors;
#endif
    }
    if (keep) { for (int i = 0; keep[i]; i++) free(keep[i]); free(keep); }
    free(blk);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    g_passes = scaled(8000) / g_threads;
    run_threads(g_threads, worker);
#ifdef SH8
    for (int i = 0; i < 64; i++) {
        void **p = g_handoff[i];
        if (p) { for (int j = 0; p[j]; j++) free(p[j]); free(p); }
    }
#endif
    return 0;
}
