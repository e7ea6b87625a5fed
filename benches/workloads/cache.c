/* cache-thrash / cache-scratch (after Hoard's benchmarks): false sharing.
 * Each thread repeatedly allocates an 8-byte object, writes it many times and frees it.
 * cache-thrash: objects come from each thread's own allocations (active false sharing if
 * the allocator hands neighbouring bytes to different threads).
 * cache-scratch (-DSCRATCH): each thread first frees an object the main thread allocated
 * next to the others' (passive false sharing if the allocator reuses it locally). */
#include "common.h"

static long g_iters, g_writes;
static char **g_initial;

static void *worker(void *arg) {
    long id = (long)arg;
#ifdef SCRATCH
    free(g_initial[id]);
#else
    (void)g_initial;
#endif
    uint64_t sum = 0;
    for (long i = 0; i < g_iters; i++) {
        volatile char *p = xmalloc(8);
        for (long w = 0; w < g_writes; w++) {
            p[w & 7] = (char)(w + id);
            sum += (uint64_t)p[(w + 1) & 7];
        }
        free((void *)p);
    }
    g_sink += sum;
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    g_iters = scaled(1600000);
    g_writes = 100;
    g_initial = xmalloc(sizeof(char *) * (size_t)g_threads);
    for (int i = 0; i < g_threads; i++) g_initial[i] = xmalloc(8);
    run_threads(g_threads, worker);
#ifndef SCRATCH
    for (int i = 0; i < g_threads; i++) free(g_initial[i]);
#endif
    free(g_initial);
    return 0;
}
