/* A small test harness for the C suite of libgomalloc.so.
 *
 * Every test is a `static void name(void)` registered with TEST(name, flags). The runner
 * (harness.c) runs each test in its own forked child with a time limit, so a crash or a
 * deadlock fails one test and the rest still run, and prints `N passed, N failed, N skipped`
 * at the end.
 *
 * CHECK(cond) records a failure (file:line and the condition) and ends the test.
 * SKIP(why) ends the test as skipped.
 */
#ifndef GOMALLOC_TEST_HARNESS_H
#define GOMALLOC_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum {
    /* The test needs libgomalloc.so preloaded (misuse detection, symbols glibc lacks). */
    T_GOMALLOC_ONLY = 1,
    /* The test is slow; the time limit is larger. */
    T_SLOW = 2,
};

struct test {
    const char *name;
    void (*fn)(void);
    int flags;
};

/* Tests register themselves into the `tests` section (see harness.c). */
#define TEST(name, flags)                                                             \
    static void name(void);                                                           \
    static const struct test test_desc_##name                                         \
        __attribute__((used, section("gomalloc_tests"), aligned(sizeof(void *)))) = { \
            #name, name, flags};                                                      \
    static void name(void)

void test_fail(const char *file, int line, const char *what) __attribute__((noreturn));
void test_skip(const char *why) __attribute__((noreturn));

#define CHECK(cond)                                          \
    do {                                                     \
        if (!(cond)) test_fail(__FILE__, __LINE__, #cond);   \
    } while (0)

/* CHECK with a printf-style explanation printed on failure. */
#define CHECKF(cond, ...)                                    \
    do {                                                     \
        if (!(cond)) {                                       \
            fprintf(stderr, "    ");                         \
            fprintf(stderr, __VA_ARGS__);                    \
            fprintf(stderr, "\n");                           \
            test_fail(__FILE__, __LINE__, #cond);            \
        }                                                    \
    } while (0)

#define SKIP(why) test_skip(why)

/* 1 when the run expects libgomalloc.so to be the process's malloc (--expect=gomalloc). */
extern int expect_gomalloc;

/* ---- helpers shared by the test files (harness.c) ---- */

/* xorshift random numbers; each thread should keep its own state. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Fills `n` bytes at `p` with a pattern derived from `seed`; check_pattern verifies it. */
void fill_pattern(void *p, size_t n, uint64_t seed);
int check_pattern(const void *p, size_t n, uint64_t seed);

static inline int is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Resident set size of the process in bytes (from /proc/self/statm). */
size_t rss_bytes(void);

/* Runs fn(arg) in a forked child with stderr captured. Returns the raw wait status; the
 * captured stderr (NUL-terminated, truncated to cap-1 bytes) goes to buf. */
int run_in_child(void (*fn)(void *), void *arg, char *buf, size_t cap);

/* Looks a function up in the process's global scope (NULL if absent). */
void *lookup(const char *name);

#endif
