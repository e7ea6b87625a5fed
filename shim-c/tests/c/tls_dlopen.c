/* The TLS trap of a preloaded malloc: after a thread exists, dlopen more modules with TLS
 * than the thread's DTV has spare slots (glibc: 14). The thread's next access to any of
 * them goes through __tls_get_addr, which grows the DTV with malloc. If malloc itself
 * needs __tls_get_addr (global-dynamic TLS) and that re-enters the update, it recurses.
 * This drives exactly that path, several times, then dlcloses everything.
 * Usage: tls_dlopen DIR (holding tlsmod0.so .. tlsmod{N-1}.so) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MODS = 40, ROUNDS = 5 };

static pthread_barrier_t loaded, done;
static long (*touch[MODS])(void);
static const char *dir;

static void *worker(void *arg) {
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        void *p = malloc(100); /* before the modules exist */
        pthread_barrier_wait(&loaded);
        for (int m = 0; m < MODS; m++) {
            void *q = malloc(32 + m);
            if (touch[m]() != 1) {
                fprintf(stderr, "tls_dlopen: module %d counter wrong\n", m);
                exit(1);
            }
            free(q);
        }
        free(p);
        pthread_barrier_wait(&done);
    }
    return NULL;
}

static void *fresh_thread(void *arg) {
    (void)arg;
    for (int m = 0; m < MODS; m++) {
        free(malloc(64));
        touch[m]();
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    pthread_barrier_init(&loaded, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL)) return 1;
    for (int r = 0; r < ROUNDS; r++) {
        void *h[MODS];
        for (int m = 0; m < MODS; m++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/tlsmod%d.so", dir, m);
            h[m] = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (!h[m]) {
                fprintf(stderr, "tls_dlopen: %s\n", dlerror());
                return 1;
            }
            touch[m] = (long (*)(void))dlsym(h[m], "tls_touch");
        }
        pthread_barrier_wait(&loaded);
        pthread_barrier_wait(&done);
        pthread_t f;
        pthread_create(&f, NULL, fresh_thread, NULL);
        pthread_join(f, NULL);
        for (int m = 0; m < MODS; m++) dlclose(h[m]);
    }
    pthread_join(t, NULL);
    printf("tls_dlopen: %d rounds of %d TLS modules loaded after thread start\n", ROUNDS, MODS);
    return 0;
}
