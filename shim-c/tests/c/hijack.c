/* An executable that defines its own `free` (a wrapper over __libc_free). The preloaded
 * library's internal frees (realloc moving or shrinking a block to 0, reallocarray) must
 * not go through the executable's `free`: they bind inside the library. Passes on glibc
 * too (glibc frees internally without the PLT). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

extern void __libc_free(void *);
static volatile int hijacked;

void free(void *p) {
    hijacked++;
    __libc_free(p);
}

#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "hijack: %s:%d: %s (hijacked=%d)\n", __FILE__, __LINE__, #cond, hijacked); \
            return 1;                                                        \
        }                                                                    \
    } while (0)

int main(void) {
    char *p = malloc(100);
    EXPECT(p != NULL);
    int before = hijacked;
    p = realloc(p, 1 << 20); /* moves: the old block is freed inside realloc */
    EXPECT(p != NULL);
    p = realloc(p, 10); /* may move back to a small class */
    EXPECT(p != NULL);
    EXPECT(realloc(p, 0) == NULL); /* frees inside realloc */
    p = reallocarray(NULL, 10, 10);
    EXPECT(p != NULL);
    EXPECT(reallocarray(p, 0, 10) == NULL);
    EXPECT(hijacked == before);
    free(malloc(10));
    EXPECT(hijacked == before + 1);
    printf("hijack: internal frees bypass the executable's free\n");
    return 0;
}
