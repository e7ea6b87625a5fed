/* Misuse must be caught: the process prints one "gomalloc: ..." line on stderr and dies
 * of SIGABRT. Each case runs in a child with stderr captured. Only meaningful with
 * libgomalloc.so preloaded (glibc catches some of these too, with other messages). */
#define _GNU_SOURCE
#include "harness.h"

#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

extern void __libc_free(void *);

/* The child must die of SIGABRT after printing exactly one line, "gomalloc: <msg> 0x...",
 * where <msg> is `expected` (the text `report::fatal` is given at that check). */
static void check_aborted(void (*fn)(void *), void *arg, const char *what, const char *expected) {
    char buf[4096];
    int st = run_in_child(fn, arg, buf, sizeof buf);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: child status %#x, not SIGABRT; stderr: %s", what, st, buf);
    char *line = strstr(buf, "gomalloc: ");
    CHECKF(line != NULL, "%s: no 'gomalloc: ' line on stderr: \"%s\"", what, buf);
    char want[256];
    snprintf(want, sizeof want, "gomalloc: %s 0x", expected);
    CHECKF(strncmp(line, want, strlen(want)) == 0, "%s: expected \"%s...\", got \"%s\"", what, want, line);
    char *nl = strchr(line, '\n');
    CHECKF(nl != NULL && nl[1] == 0, "%s: expected exactly one line, got \"%s\"", what, buf);
    CHECKF(line == buf, "%s: unexpected output before the message: \"%s\"", what, buf);
    fprintf(stderr, "      %s -> %s", what, line);
}

/* Each case is a function run in the child. The pointer games are the point. */
static char static_block[256] __attribute__((aligned(64)));

static void double_free_small(void *a) { (void)a; void *p = malloc(32); free(p); free(p); }
static void double_free_medium(void *a) { (void)a; void *p = malloc(20000); free(p); free(p); }
static void double_free_large(void *a) { (void)a; void *p = malloc(5 << 20); free(p); free(p); }
static void double_free_aligned(void *a) { (void)a; void *p = memalign(4096, 100); free(p); free(p); }
static void double_free_after_others(void *a) {
    (void)a;
    void *p = malloc(48), *q[100];
    free(p);
    for (int i = 0; i < 100; i++) q[i] = malloc(64); /* other sizes: p's slot stays free */
    free(p);
    for (int i = 0; i < 100; i++) free(q[i]);
}
static void double_free_libc_alias(void *a) { (void)a; void *p = malloc(16); __libc_free(p); __libc_free(p); }
static void interior_small(void *a) { (void)a; char *p = malloc(64); free(p + 16); }
static void interior_byte(void *a) { (void)a; char *p = malloc(64); free(p + 1); }
static void interior_large(void *a) { (void)a; char *p = malloc(1 << 20); free(p + 8192); }
static void interior_aligned(void *a) { (void)a; char *p = memalign(65536, 100); free(p + 64); }
static void foreign_stack(void *a) { (void)a; char x[64]; free(x + 16); }
static void foreign_static(void *a) { (void)a; free(static_block); }
static void foreign_mmap(void *a) {
    (void)a;
    void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    free(p);
}
static void foreign_wild(void *a) { (void)a; free((void *)0x10000); }
static void realloc_after_free(void *a) { (void)a; void *p = malloc(100); free(p); p = realloc(p, 200); free(p); }
static void realloc_of_interior(void *a) { (void)a; char *p = malloc(100); p = realloc(p + 8, 200); free(p); }
static void realloc_zero_then_free(void *a) { (void)a; void *p = malloc(100); realloc(p, 0); free(p); }
static void usable_size_after_free(void *a) { (void)a; void *p = malloc(100); free(p); malloc_usable_size(p); }
static void usable_size_foreign(void *a) { (void)a; malloc_usable_size(static_block + 8); }
/* Double frees from a thread that does not own the object's span: each free goes to the
 * span's remote free list, whose push sees the first free at its head. */
static void *thread_malloc32(void *a) { (void)a; return malloc(32); }
static void double_free_of_an_exited_threads_block(void *a) {
    (void)a;
    pthread_t t;
    void *p = NULL;
    if (pthread_create(&t, NULL, thread_malloc32, NULL) != 0 || pthread_join(t, &p) != 0 || !p) _exit(4);
    free(p);
    free(p);
}
static int owner_pipe[2];
static void *thread_malloc32_and_block(void *a) {
    *(void **)a = malloc(32);
    char c = 1;
    if (write(owner_pipe[1], &c, 1) != 1) _exit(4);
    for (;;) pause(); /* the owner stays alive, holding the span in its cache */
    return NULL;
}
static void double_free_of_a_live_threads_block(void *a) {
    (void)a;
    static void *volatile p;
    pthread_t t;
    char c;
    if (pipe(owner_pipe) != 0 || pthread_create(&t, NULL, thread_malloc32_and_block, (void *)&p) != 0) _exit(4);
    if (read(owner_pipe[0], &c, 1) != 1 || !p) _exit(4);
    free(p);
    free(p);
}
static void free_sized_twice(void *a) {
    (void)a;
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))lookup("free_sized");
    void *p = malloc(100);
    fs(p, 100);
    fs(p, 100);
}

/* The messages, as alloc-core passes them to report::fatal. */
#define DOUBLE_FREE "double free of"
#define DOUBLE_FREE_FREED_PAGES "double free (or free of a pointer gomalloc never handed out):"
#define INTERIOR "free of a pointer into the middle of an object:"
#define FOREIGN "free of a pointer not allocated by gomalloc:"
#define USE_AFTER_FREE "use of a freed pointer:"

struct misuse {
    const char *name;
    void (*fn)(void *);
    const char *message;
} cases[] = {
    {"double free (32 B)", double_free_small, DOUBLE_FREE},
    {"double free (20000 B)", double_free_medium, DOUBLE_FREE},
    /* The 5 MiB span went back to the page heap at the first free. */
    {"double free (5 MiB)", double_free_large, DOUBLE_FREE_FREED_PAGES},
    {"double free (memalign 4096)", double_free_aligned, DOUBLE_FREE},
    {"double free after other allocations", double_free_after_others, DOUBLE_FREE},
    {"double __libc_free", double_free_libc_alias, DOUBLE_FREE},
    {"double free of an exited thread's block", double_free_of_an_exited_threads_block, DOUBLE_FREE},
    {"double free of a live thread's block", double_free_of_a_live_threads_block, DOUBLE_FREE},
    {"free of p+16 (64 B block)", interior_small, INTERIOR},
    {"free of p+1", interior_byte, INTERIOR},
    {"free of p+8192 (1 MiB block)", interior_large, INTERIOR},
    {"free of p+64 (memalign 65536)", interior_aligned, INTERIOR},
    {"free of a stack address", foreign_stack, FOREIGN},
    {"free of a static array", foreign_static, FOREIGN},
    {"free of an mmap'ed page", foreign_mmap, FOREIGN},
    {"free of 0x10000", foreign_wild, FOREIGN},
    {"realloc after free", realloc_after_free, USE_AFTER_FREE},
    {"realloc of an interior pointer", realloc_of_interior, "pointer into the middle of an object:"},
    {"free after realloc(p, 0)", realloc_zero_then_free, DOUBLE_FREE},
    {"malloc_usable_size after free", usable_size_after_free, USE_AFTER_FREE},
    {"malloc_usable_size of a static array", usable_size_foreign, "pointer not allocated by gomalloc:"},
    {"free_sized twice", free_sized_twice, DOUBLE_FREE},
};

TEST(misuse_aborts_with_one_line, T_GOMALLOC_ONLY) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_aborted(cases[i].fn, NULL, cases[i].name, cases[i].message);
}

static void *expected_addr;
static void free_expected(void *a) { (void)a; free(expected_addr); }

TEST(misuse_message_names_the_address, T_GOMALLOC_ONLY) {
    /* The pointer is fixed before the fork so the parent knows it. */
    char *p = malloc(200);
    expected_addr = p + 24;
    char buf[4096], want[64];
    snprintf(want, sizeof want, "%lx", (unsigned long)(uintptr_t)expected_addr);
    int st = run_in_child(free_expected, NULL, buf, sizeof buf);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECKF(strstr(buf, want) != NULL, "message \"%s\" does not contain %s", buf, want);
    free(p);
}
