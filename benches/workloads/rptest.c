/* rptest (after rpmalloc's benchmark): threads allocate blocks of 16 B..16 KiB (weighted
 * towards small), keep a working set, and hand a quarter of what they free to the next
 * thread through a mailbox: those blocks are freed by the thread that receives them. */
#include "common.h"

#define WS 4096
#define MAILCAP 8192
typedef struct {
    pthread_mutex_t mu;
    void *mail[MAILCAP];
    int n;
} mailbox_t;
static mailbox_t *g_box;
static long g_ops;

static size_t pick_size(rng_t *r) {
    /* Roughly log-uniform from 16 B to 16 KiB. */
    int shift = (int)(rng_next(r) % 11);
    return rng_range(r, 16, (size_t)16 << shift);
}

static void *worker(void *arg) {
    long id = (long)arg;
    rng_t r = rng_seed((uint64_t)id + 99);
    void **ws = xmalloc(sizeof(void *) * WS);
    for (int i = 0; i < WS; i++) { size_t n = pick_size(&r); ws[i] = xmalloc(n); touch(ws[i], n); }
    mailbox_t *next = &g_box[(id + 1) % g_threads], *mine = &g_box[id];
    void **local = xmalloc(sizeof(void *) * MAILCAP);
    for (long i = 0; i < g_ops; i++) {
        size_t k = rng_next(&r) % WS;
        void *old = ws[k];
        size_t n = pick_size(&r);
        ws[k] = xmalloc(n);
        touch(ws[k], n);
        int sent = 0;
        if ((i & 3) == 0) {
            pthread_mutex_lock(&next->mu);
            if (next->n < MAILCAP) { next->mail[next->n++] = old; sent = 1; }
            pthread_mutex_unlock(&next->mu);
        }
        if (!sent) free(old);
        if ((i & 1023) == 0) {
            pthread_mutex_lock(&mine->mu);
            int m = mine->n;
            memcpy(local, mine->mail, sizeof(void *) * (size_t)m);
            mine->n = 0;
            pthread_mutex_unlock(&mine->mu);
            for (int j = 0; j < m; j++) free(local[j]);
        }
    }
    for (int i = 0; i < WS; i++) free(ws[i]);
    free(local);
    free(ws);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    g_box = xmalloc(sizeof(mailbox_t) * (size_t)g_threads);
    for (int i = 0; i < g_threads; i++) { pthread_mutex_init(&g_box[i].mu, NULL); g_box[i].n = 0; }
    g_ops = scaled(6000000) / g_threads;
    run_threads(g_threads, worker);
    for (int i = 0; i < g_threads; i++)
        for (int j = 0; j < g_box[i].n; j++) free(g_box[i].mail[j]);
    free(g_box);
    return 0;
}
