/* memory parked in thread caches: THREADS threads (default 2), each keeping about 3 MiB
 * live in 8192 blocks of 16 to 1024 bytes and replacing one at random each step. It
 * models a threaded server whose workers each hold a modest working set of mixed sizes:
 * what an allocator keeps per thread beyond that set (retained spans, cached pages) shows
 * up directly in peak RSS. */
#include "common.h"

enum { WINDOW = 8192 };

static long g_steps;

static void *worker(void *arg) {
    rng_t r = rng_seed(100 + (uint64_t)(uintptr_t)arg);
    char **slot = xmalloc(sizeof(char *) * WINDOW);
    for (int k = 0; k < WINDOW; k++) {
        slot[k] = xmalloc(rng_range(&r, 16, 1024));
        touch(slot[k], 16);
    }
    unsigned long sum = 0;
    for (long i = 0; i < g_steps; i++) {
        uint64_t x = rng_next(&r);
        int k = (int)(x % WINDOW);
        sum += (unsigned char)slot[k][0];
        free(slot[k]);
        size_t n = 16 + (size_t)((x >> 20) % 1009);
        slot[k] = xmalloc(n);
        memset(slot[k], (int)i, n < 64 ? n : 64);
    }
    for (int k = 0; k < WINDOW; k++) free(slot[k]);
    free(slot);
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    g_steps = scaled(4000000);
    run_threads(g_threads, worker);
    printf("metric rss_end_kb %ld\n", rss_now_kb());
    return 0;
}
