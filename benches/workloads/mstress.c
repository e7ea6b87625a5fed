/* mstress (after mimalloc-bench's mstress): many threads, random lifetimes.
 * Threads keep a set of blocks (mostly small, sometimes up to 64 KiB), free and allocate
 * at random, and swap blocks with a shared exchange array, so some blocks outlive their
 * thread and are freed by another. Threads are recreated every round. */
#include "common.h"

#define SLOTS 2000
#define XCHG 1024
static void *_Atomic g_xchg[XCHG];
static long g_ops;
static long g_round;

static size_t pick_size(rng_t *r) {
    uint64_t x = rng_next(r) % 100;
    if (x < 90) return rng_range(r, 8, 256);
    if (x < 99) return rng_range(r, 257, 4096);
    return rng_range(r, 4097, 65536);
}

static void *worker(void *arg) {
    rng_t r = rng_seed((uint64_t)(long)arg * 1000 + (uint64_t)g_round);
    void **slot = xmalloc(sizeof(void *) * SLOTS);
    memset(slot, 0, sizeof(void *) * SLOTS);
    for (long i = 0; i < g_ops; i++) {
        size_t k = rng_next(&r) % SLOTS;
        uint64_t op = rng_next(&r) % 16;
        if (op == 0) {
            /* Swap with the shared exchange array. */
            slot[k] = __atomic_exchange_n(&g_xchg[rng_next(&r) % XCHG], slot[k], __ATOMIC_ACQ_REL);
        } else if (slot[k]) {
            free(slot[k]);
            slot[k] = NULL;
        } else {
            size_t n = pick_size(&r);
            slot[k] = xmalloc(n);
            touch(slot[k], n);
        }
    }
    /* Keep a tenth alive for the next round, through the exchange array. */
    for (int k = 0; k < SLOTS; k++) {
        if (slot[k] && k % 10 == 0)
            slot[k] = __atomic_exchange_n(&g_xchg[rng_next(&r) % XCHG], slot[k], __ATOMIC_ACQ_REL);
        free(slot[k]);
    }
    free(slot);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long rounds = 10;
    int t = g_threads * 2;
    g_ops = scaled(18000000) / rounds / t;
    for (g_round = 0; g_round < rounds; g_round++) run_threads(t, worker);
    for (int i = 0; i < XCHG; i++) free(g_xchg[i]);
    return 0;
}
