/* Preloaded *before* libgomalloc.so: its constructor allocates, starts a thread and forks
 * while the process is still being set up, before any code of the test program ran. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *early_thread(void *arg) {
    for (int i = 0; i < 1000; i++) free(malloc((size_t)i * 8));
    return arg;
}

__attribute__((constructor)) static void early_init(void) {
    void *p = calloc(10, 10);
    char *s = strdup("early");
    pthread_t t;
    if (pthread_create(&t, NULL, early_thread, p) != 0) abort();
    pthread_join(t, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        free(malloc(100));
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) abort();
    free(s);
    free(p);
}
