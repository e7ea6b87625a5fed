/* fork from a multi-threaded process while other threads allocate and exit. Without
 * working pthread_atfork handlers a child inherits a heap lock held by a thread that no
 * longer exists and hangs; every child here must finish within a deadline. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;

static void *short_lived(void *arg) {
    uint64_t rng = (uintptr_t)arg + 3;
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(rng_next(&rng) % 4000);
    for (int i = 0; i < 64; i += 2) free(p[i]);
    /* Exits with half its objects freed into its own cache, half passed on and freed
     * from the spawner: the exit flushes the cache under the heap's locks. */
    void **rest = malloc(32 * sizeof(void *));
    for (int i = 0; i < 32; i++) rest[i] = p[2 * i + 1];
    return rest;
}

static void *spawner(void *arg) {
    uintptr_t n = (uintptr_t)arg;
    while (!atomic_load(&stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, (void *)n++) != 0) continue;
        void **rest;
        pthread_join(t, (void **)&rest);
        for (int i = 0; i < 32; i++) free(rest[i]);
        free(rest);
    }
    return NULL;
}

static void *worker(void *arg) {
    uint64_t rng = (uintptr_t)arg + 11;
    void *p[128] = {0};
    while (!atomic_load(&stop)) {
        int i = rng_next(&rng) % 128;
        free(p[i]);
        uint64_t r = rng_next(&rng);
        p[i] = (r & 15) == 0 ? malloc(r % 300000) : malloc(r % 600);
    }
    for (int i = 0; i < 128; i++) free(p[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 200; i++) free(malloc(i * 10));
    return NULL;
}

/* What each child does: use every kind of allocation, free inherited objects, start and
 * join a thread, then exit. */
static void child_body(void **inherited, int ninherited) {
    for (int i = 0; i < ninherited; i++) {
        if (!check_pattern(inherited[i], 64, i)) _exit(3);
        free(inherited[i]);
    }
    void *p[100];
    for (int i = 0; i < 100; i++) p[i] = (i & 1) ? malloc(i * 100) : calloc(i, 50);
    for (int i = 0; i < 100; i++) p[i] = realloc(p[i], i * 300 + 1);
    void *big = malloc(8 << 20);
    void *al = NULL;
    if (posix_memalign(&al, 1 << 16, 1000) != 0) _exit(4);
    for (int i = 0; i < 100; i++) free(p[i]);
    free(big);
    free(al);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) _exit(5);
    pthread_join(t, NULL);
    _exit(0);
}

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits for fork number `f`'s child, which must exit with status 0 within 10 s. */
static void wait_child(pid_t pid, int f) {
    double deadline = mono() + 10;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (mono() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            CHECKF(0, "fork %d: child still running after 10 s (deadlocked in the allocator?)", f);
        }
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork %d: child status %#x", f, st);
}

static void fork_loop(int forks, int from_thread);

struct fork_args { int forks; };

static void *forking_thread(void *arg) {
    fork_loop(((struct fork_args *)arg)->forks, 0);
    return NULL;
}

static void fork_loop(int forks, int from_thread) {
    if (from_thread) {
        pthread_t t;
        struct fork_args a = {forks};
        CHECK(pthread_create(&t, NULL, forking_thread, &a) == 0);
        pthread_join(t, NULL);
        return;
    }
    enum { INH = 50 };
    for (int f = 0; f < forks; f++) {
        void *inherited[INH];
        for (int i = 0; i < INH; i++) {
            inherited[i] = malloc(64 + i * 13);
            fill_pattern(inherited[i], 64, i);
        }
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) child_body(inherited, INH);
        for (int i = 0; i < INH; i++) free(inherited[i]);
        wait_child(pid, f);
    }
}

static void run_fork_test(int forks, int from_thread) {
    pthread_t s[2], w[2];
    atomic_store(&stop, 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&s[i], NULL, spawner, (void *)(uintptr_t)(i * 1000000)) == 0);
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)i) == 0);
    fork_loop(forks, from_thread);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(s[i], NULL);
    for (int i = 0; i < 2; i++) pthread_join(w[i], NULL);
}

TEST(fork_loop_while_threads_exit, T_SLOW) { run_fork_test(400, 0); }

/* larson-style replacement over 16..2016 bytes: the threads are in malloc or free nearly all
 * the time, refilling and relinking their caches' span lists with no lock held, when the
 * fork copies them. A child that flushed those half-changed caches hung (about one run in
 * five of this test, before mcache::abandon_after_fork). */
static void *replace_loop(void *arg) {
    uint64_t rng = (uintptr_t)arg * 7919 + 5;
    enum { N = 20000 };
    void **p = calloc(N, sizeof(void *));
    if (!p) return NULL;
    while (!atomic_load(&stop)) {
        int i = rng_next(&rng) % N;
        free(p[i]);
        p[i] = malloc(16 + rng_next(&rng) % 2000);
    }
    for (int i = 0; i < N; i++) free(p[i]);
    free(p);
    return NULL;
}

static void small_child(void) {
    void *q[200];
    for (int i = 0; i < 200; i++) q[i] = malloc(16 + i * 9);
    for (int i = 0; i < 200; i++) free(q[i]);
    _exit(0);
}

TEST(fork_while_threads_refill, T_SLOW) {
    pthread_t w[3];
    atomic_store(&stop, 0);
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&w[i], NULL, replace_loop, (void *)(uintptr_t)(i + 1)) == 0);
    for (int f = 0; f < 300; f++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) small_child();
        wait_child(pid, f);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(w[i], NULL);
}

TEST(fork_from_a_thread_while_threads_exit, T_SLOW) { run_fork_test(150, 1); }

TEST(system_and_popen_from_threaded_process, 0) {
    /* posix_spawn/vfork paths: no atfork handlers run, the child execs at once. */
    pthread_t w;
    atomic_store(&stop, 0);
    CHECK(pthread_create(&w, NULL, worker, (void *)(uintptr_t)5) == 0);
    for (int i = 0; i < 20; i++) {
        CHECK(system("true") == 0);
        FILE *f = popen("echo hello", "r");
        CHECK(f != NULL);
        char line[32] = {0};
        CHECK(fgets(line, sizeof line, f) != NULL && strcmp(line, "hello\n") == 0);
        CHECK(pclose(f) == 0);
    }
    atomic_store(&stop, 1);
    pthread_join(w, NULL);
}
