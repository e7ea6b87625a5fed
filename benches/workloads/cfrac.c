/* cfrac-like (after the cfrac factoring program of the classic allocator benchmarks):
 * single-threaded small-object churn of arbitrary-precision arithmetic. Numbers are
 * heap-allocated arrays of 32-bit digits; every operation allocates its result and the
 * operands are freed soon after, as cfrac's pcalloc/pfree do. */
#include "common.h"

typedef struct { int n; uint32_t d[]; } num_t;

static num_t *num_new(int n) {
    num_t *x = xmalloc(sizeof(num_t) + sizeof(uint32_t) * (size_t)n);
    x->n = n;
    return x;
}
static num_t *num_from(uint64_t v) {
    num_t *x = num_new(2);
    x->d[0] = (uint32_t)v; x->d[1] = (uint32_t)(v >> 32);
    return x;
}
static num_t *num_add(const num_t *a, const num_t *b) {
    int n = (a->n > b->n ? a->n : b->n) + 1;
    num_t *r = num_new(n);
    uint64_t c = 0;
    for (int i = 0; i < n; i++) {
        c += (i < a->n ? a->d[i] : 0) + (uint64_t)(i < b->n ? b->d[i] : 0);
        r->d[i] = (uint32_t)c; c >>= 32;
    }
    while (r->n > 1 && r->d[r->n - 1] == 0) r->n--;
    return r;
}
static num_t *num_mul(const num_t *a, const num_t *b) {
    int n = a->n + b->n;
    num_t *r = num_new(n);
    memset(r->d, 0, sizeof(uint32_t) * (size_t)n);
    for (int i = 0; i < a->n; i++) {
        uint64_t c = 0;
        for (int j = 0; j < b->n; j++) {
            c += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
            r->d[i + j] = (uint32_t)c; c >>= 32;
        }
        r->d[i + b->n] = (uint32_t)c;
    }
    while (r->n > 1 && r->d[r->n - 1] == 0) r->n--;
    return r;
}
/* Keeps numbers bounded: the low `k` digits. */
static num_t *num_trunc(num_t *a, int k) {
    if (a->n <= k) return a;
    num_t *r = num_new(k);
    memcpy(r->d, a->d, sizeof(uint32_t) * (size_t)k);
    free(a);
    return r;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long iters = scaled(7500000);
    rng_t r = rng_seed(42);
    enum { POOL = 64 };
    num_t *pool[POOL];
    for (int i = 0; i < POOL; i++) pool[i] = num_from(rng_next(&r));
    for (long i = 0; i < iters; i++) {
        int a = (int)(rng_next(&r) % POOL), b = (int)(rng_next(&r) % POOL), c = (int)(rng_next(&r) % POOL);
        num_t *t1 = num_mul(pool[a], pool[b]);
        num_t *t2 = num_add(t1, pool[c]);
        free(t1);
        t2 = num_trunc(t2, 1 + (int)(rng_next(&r) % 8));
        free(pool[c]);
        pool[c] = t2;
    }
    uint64_t sum = 0;
    for (int i = 0; i < POOL; i++) { sum += pool[i]->d[0]; free(pool[i]); }
    g_sink = sum;
    return 0;
}
