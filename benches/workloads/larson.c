/* larson: server-style random replacement (after Larson & Krishnan's benchmark).
 * Each of THREADS threads owns 1000 slots of 8..1000-byte blocks and replaces random ones.
 * After every round the slot arrays are handed to a fresh set of threads, rotated by one,
 * so most frees are of blocks another (often exited) thread allocated. */
#include "common.h"

#define SLOTS 1000
typedef struct { void *slot[SLOTS]; size_t size[SLOTS]; rng_t rng; } state_t;
static state_t *g_state;
static long g_ops;

static void *worker(void *arg) {
    state_t *s = &g_state[(long)arg];
    for (long i = 0; i < g_ops; i++) {
        size_t k = rng_next(&s->rng) % SLOTS;
        free(s->slot[k]);
        size_t n = rng_range(&s->rng, 8, 1000);
        s->slot[k] = xmalloc(n);
        s->size[k] = n;
        touch(s->slot[k], n);
    }
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    int t = g_threads;
    long rounds = 20;
    g_ops = scaled(16000000) / rounds / t;
    g_state = xmalloc(sizeof(state_t) * (size_t)t);
    for (int i = 0; i < t; i++) {
        g_state[i].rng = rng_seed((uint64_t)i + 1);
        for (int k = 0; k < SLOTS; k++) {
            g_state[i].size[k] = rng_range(&g_state[i].rng, 8, 1000);
            g_state[i].slot[k] = xmalloc(g_state[i].size[k]);
        }
    }
    for (long r = 0; r < rounds; r++) {
        run_threads(t, worker);
        /* Hand every thread's slots to the next thread of the next round. */
        state_t first = g_state[0];
        for (int i = 0; i + 1 < t; i++) g_state[i] = g_state[i + 1];
        g_state[t - 1] = first;
    }
    for (int i = 0; i < t; i++)
        for (int k = 0; k < SLOTS; k++) free(g_state[i].slot[k]);
    free(g_state);
    return 0;
}
