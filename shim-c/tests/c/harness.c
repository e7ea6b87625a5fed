/* Test runner: see harness.h. Usage:
 *   suite [--expect=gomalloc|--expect=glibc] [--list] [--no-fork] [name-substring...]
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern const struct test __start_gomalloc_tests[];
extern const struct test __stop_gomalloc_tests[];

int expect_gomalloc = 0;
static int in_child = 0;
static const struct test *current;

void test_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "    FAIL %s: %s:%d: %s\n", current ? current->name : "?", file, line, what);
    fflush(stderr);
    if (in_child) _exit(1);
    exit(1);
}

void test_skip(const char *why) {
    fprintf(stderr, "    skip %s: %s\n", current ? current->name : "?", why);
    fflush(stderr);
    _exit(77);
}

void fill_pattern(void *p, size_t n, uint64_t seed) {
    unsigned char *b = p;
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rng_next(&s);
        memcpy(b + i, &v, 8);
    }
    uint64_t v = rng_next(&s);
    for (; i < n; i++) b[i] = (unsigned char)(v >> (8 * (i & 7)));
}

int check_pattern(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rng_next(&s);
        if (memcmp(b + i, &v, 8) != 0) return 0;
    }
    uint64_t v = rng_next(&s);
    for (; i < n; i++)
        if (b[i] != (unsigned char)(v >> (8 * (i & 7)))) return 0;
    return 1;
}

size_t rss_bytes(void) {
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

int run_in_child(void (*fn)(void *), void *arg, char *buf, size_t cap) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len == cap - 1) {
            char sink[256];
            while (read(fds[0], sink, sizeof sink) > 0) {}
            break;
        }
    }
    buf[len] = 0;
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

void *lookup(const char *name) { return dlsym(RTLD_DEFAULT, name); }

/* Is `malloc` (as this program calls it) defined in libgomalloc.so? */
static int malloc_is_gomalloc(void) {
    Dl_info info;
    void *(*volatile m)(size_t) = malloc;
    if (!dladdr((void *)m, &info) || !info.dli_fname) return 0;
    return strstr(info.dli_fname, "libgomalloc") != NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs one test in a child; returns 0 pass, 1 fail, 77 skip. */
static int run_one(const struct test *t, int fork_each) {
    current = t;
    if (!fork_each) {
        t->fn();
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        in_child = 1;
        t->fn();
        fflush(NULL);
        _exit(0);
    }
    int limit = (t->flags & T_SLOW) ? 300 : 60;
    double deadline = now() + limit;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            perror("waitpid");
            return 1;
        }
        if (now() > deadline) {
            fprintf(stderr, "    FAIL %s: timed out after %d s (deadlock?)\n", t->name, limit);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 1;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 0) return 0;
        if (WEXITSTATUS(status) == 77) return 77;
        return 1;
    }
    if (WIFSIGNALED(status))
        fprintf(stderr, "    FAIL %s: killed by signal %d (%s)\n", t->name, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
    return 1;
}

int main(int argc, char **argv) {
    int fork_each = 1, list = 0, expect_set = 0;
    const char *filters[64];
    int nfilters = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--expect=gomalloc")) expect_gomalloc = 1, expect_set = 1;
        else if (!strcmp(argv[i], "--expect=glibc")) expect_gomalloc = 0, expect_set = 1;
        else if (!strcmp(argv[i], "--no-fork")) fork_each = 0;
        else if (!strcmp(argv[i], "--list")) list = 1;
        else if (nfilters < 64) filters[nfilters++] = argv[i];
    }
    int is_gomalloc = malloc_is_gomalloc();
    if (!expect_set) expect_gomalloc = is_gomalloc;
    if (expect_gomalloc != is_gomalloc) {
        fprintf(stderr, "suite: expected malloc from %s but it comes from %s (LD_PRELOAD=%s)\n",
                expect_gomalloc ? "libgomalloc.so" : "glibc", is_gomalloc ? "libgomalloc.so" : "glibc",
                getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    printf("C suite, malloc from %s\n", is_gomalloc ? "libgomalloc.so" : "glibc");
    int passed = 0, failed = 0, skipped = 0;
    for (const struct test *t = __start_gomalloc_tests; t < __stop_gomalloc_tests; t++) {
        if (nfilters) {
            int hit = 0;
            for (int f = 0; f < nfilters; f++) hit |= strstr(t->name, filters[f]) != NULL;
            if (!hit) continue;
        }
        if (list) {
            printf("%s\n", t->name);
            continue;
        }
        if ((t->flags & T_GOMALLOC_ONLY) && !expect_gomalloc) {
            printf("skip %s (needs libgomalloc.so)\n", t->name);
            skipped++;
            continue;
        }
        double t0 = now();
        int r = run_one(t, fork_each);
        double dt = now() - t0;
        if (r == 0) passed++;
        else if (r == 77) skipped++;
        else failed++;
        printf("%s %s (%.2f s)\n", r == 0 ? "ok  " : r == 77 ? "skip" : "FAIL", t->name, dt);
    }
    if (list) return 0;
    if (skipped) printf("(%d skipped)\n", skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
