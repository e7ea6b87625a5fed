/* malloc-large (after mimalloc-bench's malloc-large): a single thread keeps 20 blocks of
 * 64 KiB..8 MiB and replaces a random one at a time, touching every page of each new
 * block. Measures how well large blocks are reused instead of mapped and faulted anew. */
#include "common.h"

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long iters = scaled(12000);
    rng_t r = rng_seed(5);
    enum { LIVE = 20 };
    void *live[LIVE] = {0};
    uint64_t sum = 0;
    for (long i = 0; i < iters; i++) {
        int k = (int)(rng_next(&r) % LIVE);
        free(live[k]);
        size_t n = rng_range(&r, 64 << 10, 8 << 20);
        char *p = xmalloc(n);
        for (size_t o = 0; o < n; o += 4096) p[o] = (char)o;
        sum += (unsigned char)p[n / 2];
        live[k] = p;
    }
    for (int k = 0; k < LIVE; k++) free(live[k]);
    g_sink = sum;
    return 0;
}
