/* espresso-like (after the espresso logic minimiser of the classic allocator benchmarks):
 * single-threaded churn of set (bit-vector) objects of 16..512 bytes, with a live pool,
 * random frees, copies and realloc growth of cube lists. */
#include "common.h"

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long iters = scaled(12000000);
    rng_t r = rng_seed(7);
    enum { LIVE = 4000 };
    void **live = xmalloc(sizeof(void *) * LIVE);
    size_t *sz = xmalloc(sizeof(size_t) * LIVE);
    for (int i = 0; i < LIVE; i++) { sz[i] = rng_range(&r, 16, 512); live[i] = xmalloc(sz[i]); memset(live[i], 0, sz[i]); }
    /* A growing "cube list", reallocated as espresso's sf_addset does. */
    size_t list_cap = 16, list_n = 0;
    void **list = xmalloc(sizeof(void *) * list_cap);
    uint64_t sum = 0;
    for (long i = 0; i < iters; i++) {
        int k = (int)(rng_next(&r) % LIVE);
        uint64_t op = rng_next(&r) % 8;
        if (op < 5) {
            /* Replace with a fresh set (set_new + set_copy). */
            int src = (int)(rng_next(&r) % LIVE);
            size_t n = sz[src];
            void *p = xmalloc(n);
            memcpy(p, live[src], n);
            ((unsigned char *)p)[i % n] ^= 1;
            free(live[k]);
            live[k] = p; sz[k] = n;
        } else if (op < 7) {
            size_t n = rng_range(&r, 16, 512);
            free(live[k]);
            live[k] = xmalloc(n); sz[k] = n;
            memset(live[k], (int)i, n < 32 ? n : 32);
        } else {
            if (list_n == list_cap) {
                list_cap *= 2;
                list = realloc(list, sizeof(void *) * list_cap);
                if (!list) { fprintf(stderr, "out of memory\n"); return 1; }
            }
            list[list_n++] = xmalloc(32);
            if (list_n >= 2048) {
                for (size_t j = 0; j < list_n; j++) { sum += ((unsigned char *)list[j])[0]; free(list[j]); }
                list_n = 0;
                list_cap = 16;
                free(list);
                list = xmalloc(sizeof(void *) * list_cap);
            }
        }
    }
    for (size_t j = 0; j < list_n; j++) free(list[j]);
    free(list);
    for (int i = 0; i < LIVE; i++) { sum += ((unsigned char *)live[i])[0]; free(live[i]); }
    free(live); free(sz);
    g_sink = sum;
    return 0;
}
