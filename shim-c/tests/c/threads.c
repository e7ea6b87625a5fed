/* Threads created by C: churn, cross-thread frees, allocation from thread-exit
 * destructors, concurrent stress with content checks. */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ---- thread churn ---- */

enum { KEEP = 64 };

struct churn_arg {
    uint64_t seed;
    void *kept[KEEP];
    size_t kept_size[KEEP];
};

static void *churn_thread(void *argp) {
    struct churn_arg *a = argp;
    uint64_t rng = a->seed;
    void *local[256];
    size_t lsz[256];
    for (int i = 0; i < 256; i++) {
        uint64_t r = rng_next(&rng);
        lsz[i] = (r & 15) == 0 ? r % 200000 : r % 1024;
        local[i] = (r & 1) ? malloc(lsz[i]) : calloc(1, lsz[i]);
        CHECK(local[i] != NULL);
        fill_pattern(local[i], lsz[i], a->seed + i);
    }
    for (int i = 0; i < 256; i++) {
        CHECK(check_pattern(local[i], lsz[i], a->seed + i));
        if (i < KEEP) {
            a->kept[i] = local[i]; /* freed by the joining thread */
            a->kept_size[i] = lsz[i];
        } else {
            free(local[i]);
        }
    }
    return NULL;
}

TEST(thread_churn_2000_threads, T_SLOW) {
    enum { TOTAL = 2000, WIDTH = 8 };
    static struct churn_arg args[WIDTH];
    for (int round = 0; round < TOTAL / WIDTH; round++) {
        pthread_t t[WIDTH];
        for (int i = 0; i < WIDTH; i++) {
            args[i].seed = (uint64_t)round * WIDTH + i + 1;
            CHECK(pthread_create(&t[i], NULL, churn_thread, &args[i]) == 0);
        }
        for (int i = 0; i < WIDTH; i++) {
            CHECK(pthread_join(t[i], NULL) == 0);
            for (int k = 0; k < KEEP; k++) {
                CHECK(check_pattern(args[i].kept[k], args[i].kept_size[k], args[i].seed + k));
                free(args[i].kept[k]);
            }
        }
    }
}

static atomic_int detached_done;

static void *detached_thread(void *arg) {
    uint64_t rng = (uintptr_t)arg + 1;
    for (int i = 0; i < 100; i++) {
        void *p = malloc(rng_next(&rng) % 3000);
        CHECK(p != NULL);
        free(p);
    }
    (void)malloc(100); /* leaked on purpose: thread exit with live objects */
    atomic_fetch_add(&detached_done, 1);
    return NULL;
}

TEST(detached_threads_exit_with_live_objects, 0) {
    enum { N = 500 };
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < N; i++) {
        pthread_t t;
        while (pthread_create(&t, &attr, detached_thread, (void *)(uintptr_t)i) != 0) usleep(1000);
        if (i % 16 == 15)
            while (atomic_load(&detached_done) < i - 32) usleep(100);
    }
    while (atomic_load(&detached_done) < N) usleep(1000);
    usleep(20000); /* let the last ones finish exiting */
}

/* ---- cross-thread frees: producers allocate, consumers free ---- */

enum { RING = 1024, PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 200000 };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void *slot[RING];
    size_t head, tail;
    int producers_left;
} ring = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, PRODUCERS};

static void *producer(void *arg) {
    uint64_t rng = (uintptr_t)arg * 7919 + 1;
    for (int i = 0; i < PER_PRODUCER; i++) {
        uint64_t r = rng_next(&rng);
        size_t n = 16 + ((r & 31) == 0 ? r % 40000 : r % 500);
        uint64_t *p = malloc(n);
        CHECK(p != NULL);
        p[0] = n;
        p[1] = r;
        fill_pattern(p + 2, n - 16 < 64 ? n - 16 : 64, r);
        pthread_mutex_lock(&ring.mu);
        while (ring.head - ring.tail == RING) pthread_cond_wait(&ring.not_full, &ring.mu);
        ring.slot[ring.head++ % RING] = p;
        pthread_cond_signal(&ring.not_empty);
        pthread_mutex_unlock(&ring.mu);
    }
    pthread_mutex_lock(&ring.mu);
    ring.producers_left--;
    pthread_cond_broadcast(&ring.not_empty);
    pthread_mutex_unlock(&ring.mu);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&ring.mu);
        while (ring.head == ring.tail && ring.producers_left > 0) pthread_cond_wait(&ring.not_empty, &ring.mu);
        if (ring.head == ring.tail) {
            pthread_mutex_unlock(&ring.mu);
            return NULL;
        }
        uint64_t *p = ring.slot[ring.tail++ % RING];
        pthread_cond_signal(&ring.not_full);
        pthread_mutex_unlock(&ring.mu);
        size_t n = p[0];
        CHECK(malloc_usable_size(p) >= n);
        CHECK(check_pattern(p + 2, n - 16 < 64 ? n - 16 : 64, p[1]));
        free(p);
    }
}

TEST(cross_thread_frees, T_SLOW) {
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (int i = 0; i < PRODUCERS; i++) CHECK(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < CONSUMERS; i++) CHECK(pthread_create(&c[i], NULL, consumer, NULL) == 0);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
    for (int i = 0; i < CONSUMERS; i++) pthread_join(c[i], NULL);
    CHECK(ring.head == (size_t)PRODUCERS * PER_PRODUCER && ring.tail == ring.head);
}

/* ---- allocation from thread-exit destructors (after the thread's cache is flushed) ---- */

static pthread_key_t early_key, late_key;
static atomic_int dtor_runs;

/* Re-arms itself twice: glibc then runs the destructors again, up to 4 rounds. */
static void key_dtor(void *v) {
    uintptr_t round = (uintptr_t)v;
    void *p[50];
    for (int i = 0; i < 50; i++) {
        p[i] = malloc(i * 37);
        CHECK(p[i] != NULL);
    }
    for (int i = 0; i < 50; i++) free(p[i]);
    atomic_fetch_add(&dtor_runs, 1);
    if (round < 3) pthread_setspecific(early_key, (void *)(round + 1));
}

static void late_dtor(void *v) {
    /* Frees an object the thread allocated long before, then allocates and frees more. */
    free(v);
    void *q = calloc(100, 100);
    CHECK(q != NULL);
    free(q);
    atomic_fetch_add(&dtor_runs, 1);
}

extern int __cxa_thread_atexit_impl(void (*)(void *), void *, void *);
extern void *__dso_handle;

static void tls_dtor(void *v) {
    free(v);
    void *q = malloc(5000);
    CHECK(q != NULL);
    free(q);
    atomic_fetch_add(&dtor_runs, 1);
}

static void *dtor_thread(void *arg) {
    (void)arg;
    void *p = malloc(128);
    pthread_setspecific(early_key, (void *)1);
    pthread_setspecific(late_key, malloc(300));
    /* A C++ thread_local destructor (glibc callocs its list node: malloc inside glibc's
     * thread-exit path). */
    __cxa_thread_atexit_impl(tls_dtor, malloc(77), &__dso_handle);
    free(p);
    return NULL;
}

TEST(malloc_and_free_inside_thread_exit_destructors, 0) {
    CHECK(pthread_key_create(&early_key, key_dtor) == 0);
    CHECK(pthread_key_create(&late_key, late_dtor) == 0);
    for (int round = 0; round < 50; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, dtor_thread, NULL) == 0);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    CHECKF(atomic_load(&dtor_runs) == 50 * 4 * 5, "destructor runs %d", atomic_load(&dtor_runs));
}

/* ---- concurrent stress with content checks ---- */

static void *stress_thread(void *arg) {
    enum { SLOTS = 512 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    uint64_t seed[SLOTS] = {0};
    uint64_t rng = (uintptr_t)arg * 1000003 + 17;
    for (int step = 0; step < 300000; step++) {
        int i = rng_next(&rng) % SLOTS;
        if (p[i]) CHECK(check_pattern(p[i], sz[i] < 256 ? sz[i] : 256, seed[i]));
        uint64_t r = rng_next(&rng);
        size_t n = (r & 63) == 0 ? r % (1 << 20) : (r & 7) == 0 ? r % 32768 : r % 256;
        switch ((r >> 32) % 5) {
        case 0: free(p[i]); p[i] = NULL; sz[i] = 0; continue;
        case 1: if (n) { void *q = realloc(p[i], n); CHECK(q != NULL);
                  size_t keep = sz[i] < n ? sz[i] : n; keep = keep < 256 ? keep : 256;
                  if (p[i]) CHECK(check_pattern(q, keep, seed[i]));
                  p[i] = q; break; }
                /* fall through */
        case 2: free(p[i]); p[i] = malloc(n); break;
        case 3: free(p[i]); p[i] = calloc(1, n); break;
        case 4: free(p[i]); p[i] = NULL; CHECK(posix_memalign(&p[i], (size_t)16 << (r % 10), n) == 0); break;
        }
        CHECK(p[i] != NULL);
        sz[i] = n;
        seed[i] = r;
        fill_pattern(p[i], n < 256 ? n : 256, r);
    }
    for (int i = 0; i < SLOTS; i++) free(p[i]);
    return NULL;
}

TEST(concurrent_stress_4_threads, T_SLOW) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, stress_thread, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
}
