/* fragmentation: allocate 1.2 million blocks of 16..1024 bytes (about 600 MB at full
 * scale), free nine in ten at random, then allocate blocks of other sizes (2..16 KiB) worth
 * a quarter of what was freed. Prints the RSS left at the end (`metric rss_end_kb`): an
 * allocator that cannot reuse or return the freed memory keeps it all. */
#include "common.h"

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long n = scaled(1200000);
    rng_t r = rng_seed(13);
    void **a = xmalloc(sizeof(void *) * (size_t)n);
    size_t freed = 0;
    for (long i = 0; i < n; i++) {
        size_t s = rng_range(&r, 16, 1024);
        a[i] = xmalloc(s);
        memset(a[i], 1, s);
    }
    for (long i = 0; i < n; i++) {
        if (rng_next(&r) % 10 != 0) {
            freed += 520; /* mean block size */
            free(a[i]);
            a[i] = NULL;
        }
    }
    size_t target = freed / 4, got = 0;
    long m = 0, cap = 1024;
    void **b = xmalloc(sizeof(void *) * (size_t)cap);
    while (got < target) {
        size_t s = rng_range(&r, 2048, 16384);
        if (m == cap) { cap *= 2; b = realloc(b, sizeof(void *) * (size_t)cap); if (!b) return 1; }
        b[m] = xmalloc(s);
        memset(b[m], 2, s);
        m++;
        got += s;
    }
    printf("metric rss_end_kb %ld\n", rss_now_kb());
    for (long i = 0; i < m; i++) free(b[i]);
    for (long i = 0; i < n; i++) free(a[i]);
    free(b);
    free(a);
    return 0;
}
