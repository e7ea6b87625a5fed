/* xmalloc-test: producer/consumer (after Lever & Boreham's xmalloc-test).
 * Half the threads allocate 16..128-byte blocks and pass them in batches of 256 through a
 * bounded queue; the other half free them. Every free is a cross-thread free. */
#include "common.h"

#define BATCH 256
#define QCAP 64
typedef struct { void *p[BATCH]; } batch_t;
static batch_t *g_q[QCAP];
static int g_head, g_count, g_done_producers, g_producers;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_not_full = PTHREAD_COND_INITIALIZER, g_not_empty = PTHREAD_COND_INITIALIZER;
static long g_batches;

static void *producer(void *arg) {
    rng_t r = rng_seed((uint64_t)(long)arg + 7);
    for (long b = 0; b < g_batches; b++) {
        batch_t *bt = xmalloc(sizeof(batch_t));
        for (int i = 0; i < BATCH; i++) {
            size_t n = rng_range(&r, 16, 128);
            bt->p[i] = xmalloc(n);
            touch(bt->p[i], n);
        }
        pthread_mutex_lock(&g_mu);
        while (g_count == QCAP) pthread_cond_wait(&g_not_full, &g_mu);
        g_q[(g_head + g_count++) % QCAP] = bt;
        pthread_cond_signal(&g_not_empty);
        pthread_mutex_unlock(&g_mu);
    }
    pthread_mutex_lock(&g_mu);
    g_done_producers++;
    pthread_cond_broadcast(&g_not_empty);
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_mu);
        while (g_count == 0 && g_done_producers < g_producers) pthread_cond_wait(&g_not_empty, &g_mu);
        if (g_count == 0) { pthread_mutex_unlock(&g_mu); return NULL; }
        batch_t *bt = g_q[g_head];
        g_head = (g_head + 1) % QCAP;
        g_count--;
        pthread_cond_signal(&g_not_full);
        pthread_mutex_unlock(&g_mu);
        for (int i = 0; i < BATCH; i++) free(bt->p[i]);
        free(bt);
    }
}

static void *role(void *arg) {
    long i = (long)arg;
    return i < g_producers ? producer(arg) : consumer(arg);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    int t = g_threads < 2 ? 2 : g_threads;
    g_producers = t / 2;
    g_batches = scaled(16000) / g_producers;
    run_threads(t, role);
    return 0;
}
