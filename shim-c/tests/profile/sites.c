/* Two allocation sites of known sizes, for the heap profile (shim-c/tests/run-profile.sh).
 *
 *   keep_big     BIG_N blocks of BIG_SIZE bytes, never freed (the deliberate leak)
 *   churn_small  SMALL_N blocks of SMALL_SIZE bytes, all freed before exit
 *
 * So at exit `inuse_space` has keep_big first (and churn_small at zero), `alloc_space`
 * has churn_small first; the leak report names keep_big alone.
 *
 *   sites            both sites in the main thread
 *   sites threads    churn_small in 4 threads at once (4 times the bytes), keep_big in main
 *   sites fork       the sites in a forked child, which exits through exit() (its profile
 *                    is the child's: GOMALLOC_PROFILE with %p)
 *
 * Built with -fno-omit-frame-pointer (the profile's stack walk follows frame pointers),
 * -fno-builtin (no malloc/free pair folded away), -rdynamic (the leak report names
 * functions through the dynamic symbol table). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_SIZE 4096
#define BIG_N 2000
#define SMALL_SIZE 100
#define SMALL_N 200000
#define SMALL_KEEP 20000

static void *volatile sink;

__attribute__((noinline)) void keep_big(void) {
    for (int i = 0; i < BIG_N; i++) {
        char *p = malloc(BIG_SIZE);
        memset(p, 1, BIG_SIZE);
        sink = p; /* leaked on purpose */
    }
}

__attribute__((noinline)) void churn_small(void) {
    static __thread void *ring[SMALL_KEEP];
    for (int i = 0; i < SMALL_N; i++) {
        int k = i % SMALL_KEEP;
        if (i >= SMALL_KEEP)
            free(ring[k]);
        ring[k] = malloc(SMALL_SIZE);
        memset(ring[k], 2, SMALL_SIZE);
    }
    for (int k = 0; k < SMALL_KEEP; k++)
        free(ring[k]);
}

static void *churn_thread(void *arg) {
    (void)arg;
    churn_small();
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "threads") == 0) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, churn_thread, NULL);
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        keep_big();
        return 0;
    }
    if (strcmp(mode, "fork") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            keep_big();
            churn_small();
            exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
    }
    keep_big();
    churn_small();
    return 0;
}
