/* libgomalloc.so dlopen'ed (not preloaded) after a thread started. With the
 * initial-exec-tls feature the library is marked DF_STATIC_TLS: ld.so must place its TLS
 * segment in the static TLS surplus of every thread, the already running one included
 * ("cannot allocate memory in static TLS block" if it does not fit). Then both threads
 * allocate and free through the library's own malloc/free (its heap, not glibc's), and a
 * thread created afterwards does too.
 * Usage: dlopen_lib /path/libgomalloc.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void *(*gm_malloc)(size_t);
static void (*gm_free)(void *);
static size_t (*gm_usable)(void *);
static pthread_barrier_t opened;

static int churn(void) {
    void *p[256];
    for (int r = 0; r < 50; r++) {
        for (int i = 0; i < 256; i++) {
            size_t n = 8 + (size_t)(i * 37 + r) % 3000;
            p[i] = gm_malloc(n);
            if (p[i] == NULL || gm_usable(p[i]) < n) return 1;
            memset(p[i], i, n);
        }
        for (int i = 0; i < 256; i++) gm_free(p[i]);
    }
    return 0;
}

static void *early_thread(void *arg) {
    (void)arg;
    pthread_barrier_wait(&opened);
    return (void *)(long)churn();
}

static void *late_thread(void *arg) {
    (void)arg;
    return (void *)(long)churn();
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_barrier_init(&opened, NULL, 2);
    pthread_t t1, t2;
    if (pthread_create(&t1, NULL, early_thread, NULL)) return 1;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "dlopen_lib: %s\n", dlerror());
        return 1;
    }
    gm_malloc = (void *(*)(size_t))dlsym(h, "malloc");
    gm_free = (void (*)(void *))dlsym(h, "free");
    gm_usable = (size_t (*)(void *))dlsym(h, "malloc_usable_size");
    if (!gm_malloc || !gm_free || !gm_usable) {
        fprintf(stderr, "dlopen_lib: dlsym failed\n");
        return 1;
    }
    pthread_barrier_wait(&opened);
    int rc = churn();
    void *r1, *r2;
    pthread_join(t1, &r1);
    if (pthread_create(&t2, NULL, late_thread, NULL)) return 1;
    pthread_join(t2, &r2);
    if (rc || r1 || r2) {
        fprintf(stderr, "dlopen_lib: churn failed (%d %ld %ld)\n", rc, (long)r1, (long)r2);
        return 1;
    }
    return 0;
}
