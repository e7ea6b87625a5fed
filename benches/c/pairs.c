/* The C twin of examples/pairs.rs, for benches/callgrind-c.sh: N malloc(SIZE) + free pairs
 * on one thread, each object touched once so nothing can be optimised away. Build with
 * -O2 -fno-builtin (GCC removes malloc/free pairs it can see); run it under
 * LD_PRELOAD=<allocator>.
 * usage: pairs SIZE N [SIZE2]
 * With SIZE2, each iteration is malloc(SIZE), malloc(SIZE2), free, free: two pairs whose
 * frees alternate between two spans (gomalloc's last-free hint misses on every one). */
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    size_t size = strtoul(argv[1], NULL, 10);
    long n = strtol(argv[2], NULL, 10);
    if (argc > 3) {
        size_t size2 = strtoul(argv[3], NULL, 10);
        for (long i = 0; i < n; i++) {
            char *p = malloc(size), *q = malloc(size2);
            if (p == NULL || q == NULL) return 1;
            *(volatile char *)p = 1;
            *(volatile char *)q = 1;
            free(p);
            free(q);
        }
        return 0;
    }
    for (long i = 0; i < n; i++) {
        char *p = malloc(size);
        if (p == NULL) return 1;
        *(volatile char *)p = 1;
        free(p);
    }
    return 0;
}
