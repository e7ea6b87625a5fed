/* How a process lives and dies must not change when libgomalloc.so is preloaded (issue 16).
 *
 * glibc ends a process when its last thread exits (pthread_exit of the main thread
 * included); a signal whose default action is to terminate ends it; fork, vfork,
 * posix_spawn, daemon and exec work from any thread. A thread the allocator starts for
 * itself (the scavenger) must change none of that. Every scenario first allocates and
 * frees well over the 4 MiB of free memory at which gomalloc starts its scavenger, so the
 * thread exists (or existed) when the scenario does what it tests.
 *
 *   process_life SCENARIO    runs the scenario in a fresh exec of this program, in its own
 *                            process group, and checks how that process ends: its exit
 *                            status or signal, within a deadline. A process still alive at
 *                            the deadline is reported (its State and Threads from /proc),
 *                            sent SIGTERM to show whether that ends it, then SIGKILLed.
 *                            Prints `ok SCENARIO (T s)` or `FAIL SCENARIO: why`; exit 0/1.
 *   process_life --list      the scenarios, one a line (run-process-life.sh runs each).
 *   process_life --child SCENARIO FD   internal: the scenario itself; FD is a pipe to the
 *                            driver (readiness byte, daemon's report).
 *
 * Every scenario must pass on glibc's malloc (no preload), which validates the scenario.
 * The two `*_one_thread` scenarios are gomalloc-only expectations (trivially true on
 * glibc): the scavenger thread exists only while there is memory to give back.
 * Build: gcc -O2 -fno-builtin -pthread (GCC would fold malloc/free pairs otherwise).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/syscall.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MiB ((size_t)1 << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

/* Allocates `total` bytes in blocks of `block` bytes, writes every byte, then frees every
 * block (free_all) or every other one (the rest is kept until the process ends). */
static void churn(size_t total, size_t block, int free_all) {
    size_t n = total / block;
    void **p = malloc(n * sizeof(void *));
    if (!p) die("malloc of the pointer array failed");
    for (size_t i = 0; i < n; i++) {
        p[i] = malloc(block);
        if (!p[i]) die("malloc(%zu) failed", block);
        memset(p[i], (int)(i & 0xff) | 1, block);
    }
    for (size_t i = 0; i < n; i++)
        if (free_all || (i & 1)) free(p[i]);
    free(p);
}

/* Threads in this process, from /proc/self/task. No allocation (getdents64 into a stack
 * buffer): the polls of the `*_one_thread` scenarios must not wake the allocator. */
static int thread_count(void) {
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) die("open /proc/self/task: %s", strerror(errno));
    char buf[4096];
    int n = 0;
    long got;
    while ((got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got;) {
            struct dirent64 *e = (struct dirent64 *)(buf + off);
            if (e->d_name[0] != '.') n++;
            off += e->d_reclen;
        }
    }
    close(fd);
    return n;
}

/* "State: ..., Threads: N" of process `pid` from /proc (for the reports of a hang). */
static void describe(pid_t pid, char *out, size_t len) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    snprintf(out, len, "(no /proc entry)");
    FILE *f = fopen(path, "r");
    if (!f) return;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "State:", 6) == 0 || strncmp(line, "Threads:", 8) == 0) {
            line[strcspn(line, "\n")] = 0;
            for (char *c = line; *c; c++)
                if (*c == '\t') *c = ' ';
            size_t used = strlen(out);
            snprintf(out + used, len - used, "%s%s", used ? ", " : "", line);
        }
    }
    fclose(f);
}

/* waitpid with a deadline: the status, or -1 if `pid` is still there after `secs`. */
static int wait_deadline(pid_t pid, double secs) {
    double end = now_s() + secs;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) die("waitpid(%d): %s", (int)pid, strerror(errno));
        if (now_s() > end) return -1;
        sleep_ms(5);
    }
}

/* Inside a scenario: waits for a child it forked; on a hang, reports and kills it. */
static int wait_child(pid_t pid, const char *what) {
    int st = wait_deadline(pid, 5);
    if (st == -1) {
        char d[160];
        describe(pid, d, sizeof d);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        die("%s (pid %d) still alive after 5 s [%s]; killed", what, (int)pid, d);
    }
    return st;
}

static void expect_exit0(int st, const char *what) {
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("%s: exit status %d%s%d, expected 0", what, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
            WIFSIGNALED(st) ? ", signal " : "", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int report_fd = -1;  /* the pipe to the driver */
static pthread_t main_thread;

static void say(const char *s) {
    if (write(report_fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write to the driver failed");
}

static void start_thread(void *(*fn)(void *), void *arg, int detached) {
    pthread_t t;
    int rc = pthread_create(&t, NULL, fn, arg);
    if (rc != 0) die("pthread_create: %s", strerror(rc));
    if (detached) pthread_detach(t);
}

/* ---- main's pthread_exit -------------------------------------------------------------- */

static void *late_worker(void *arg) {
    (void)arg;
    sleep_ms(200);
    churn(8 * MiB, 4096, 1);
    return NULL; /* the last application thread returns: glibc calls exit(0) */
}

/* Main pthread_exits while a worker still runs; the worker then returns normally. */
static void worker_outlives_main(void) {
    churn(32 * MiB, 16384, 0);
    start_thread(late_worker, NULL, 0);
    pthread_exit(0);
}

/* Main frees 64 MiB and pthread_exits at once: the allocator has memory to give back. */
static void big_free_then_pthread_exit(void) {
    churn(64 * MiB, 16384, 1);
    churn(16 * MiB, MiB, 1);
    pthread_exit(0);
}

/* As above, 1.2 s later: the freed memory has come of age (gomalloc keeps memory freed in
 * the last second) and the scavenger is giving it back as main exits. */
static void aged_free_then_pthread_exit(void) {
    churn(64 * MiB, 16384, 1);
    churn(16 * MiB, MiB, 1);
    sleep_ms(1200);
    pthread_exit(0);
}

/* ---- exit status ---------------------------------------------------------------------- */

static void *busy_worker(void *arg) {
    (void)arg;
    for (;;) churn(2 * MiB, 1000, 1);
    return NULL;
}

/* exit(3) from main while a worker allocates: the status stays 3. */
static void exit3(void) {
    churn(32 * MiB, 16384, 0);
    start_thread(busy_worker, NULL, 1);
    sleep_ms(50);
    exit(3);
}

static void *exit3_worker(void *arg) {
    (void)arg;
    sleep_ms(100);
    churn(8 * MiB, 4096, 1);
    exit(3);
}

/* Main pthread_exits, then the worker calls exit(3): the status is 3. */
static void worker_exit3(void) {
    churn(32 * MiB, 16384, 0);
    start_thread(exit3_worker, NULL, 0);
    pthread_exit(0);
}

/* ---- SIGTERM ---------------------------------------------------------------------------- */

static void *sleeper(void *arg) {
    (void)arg;
    pthread_join(main_thread, NULL); /* glibc lets a thread join the main thread */
    churn(8 * MiB, 16384, 1);
    say("R"); /* main has exited: the driver sends SIGTERM now */
    for (;;) pause();
    return NULL;
}

/* Main pthread_exits, one worker sleeps: SIGTERM must kill the process. */
static void sigterm_after_main_exit(void) {
    churn(32 * MiB, 16384, 0);
    start_thread(sleeper, NULL, 0);
    pthread_exit(0);
}

/* Main sleeps in pause(): SIGTERM must kill the process. */
static void sigterm_main_in_pause(void) {
    churn(32 * MiB, 16384, 0);
    say("R");
    for (;;) pause();
}

/* ---- fork, vfork, posix_spawn, exec, daemon --------------------------------------------- */

static void *fork_thread(void *arg) {
    int child_pthread_exits = (int)(intptr_t)arg;
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* The child's one thread is the parent's non-main thread. */
        churn(16 * MiB, 16384, 1);
        churn(4 * MiB, 100, 1);
        if (child_pthread_exits) pthread_exit(0); /* its last thread: exit(0) */
        exit(0);
    }
    expect_exit0(wait_child(pid, "child forked from a thread"), "child forked from a thread");
    return NULL;
}

static void fork_from_thread_common(int child_pthread_exits) {
    churn(32 * MiB, 16384, 0);
    start_thread(busy_worker, NULL, 1); /* allocations in flight at the fork */
    pthread_t t;
    if (pthread_create(&t, NULL, fork_thread, (void *)(intptr_t)child_pthread_exits) != 0)
        die("pthread_create failed");
    pthread_join(t, NULL);
    exit(0);
}

/* fork from a non-main thread; the child allocates, frees and exits 0. */
static void fork_from_thread(void) { fork_from_thread_common(0); }

/* The same, and the child's only thread ends with pthread_exit. */
static void fork_from_thread_pthread_exit(void) { fork_from_thread_common(1); }

/* Starts /bin/true by vfork + exec, posix_spawn, or fork + (allocations) + exec. */
enum spawn_how { VFORK_EXEC, POSIX_SPAWN, FORK_EXEC };

static pid_t start_true(enum spawn_how how) {
    char *argv[] = {"true", NULL};
    pid_t pid;
    if (how == POSIX_SPAWN) {
        int rc = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
        if (rc != 0) die("posix_spawn: %s", strerror(rc));
        return pid;
    }
    pid = how == VFORK_EXEC ? vfork() : fork();
    if (pid < 0) die("fork/vfork: %s", strerror(errno));
    if (pid == 0) {
        if (how == FORK_EXEC) churn(12 * MiB, 16384, 1); /* not after vfork: shared memory */
        execv("/bin/true", argv);
        _exit(127);
    }
    return pid;
}

/* /bin/true started ten times after lots of malloc/free, a worker allocating meanwhile;
 * each must exit 0. */
static void spawn_true(enum spawn_how how, const char *what) {
    start_thread(busy_worker, NULL, 1);
    for (int i = 0; i < 10; i++) {
        churn(16 * MiB, 16384, 1);
        expect_exit0(wait_child(start_true(how), what), what);
    }
    exit(0);
}

static void vfork_exec(void) { spawn_true(VFORK_EXEC, "vfork'ed /bin/true"); }
static void posix_spawn_true(void) { spawn_true(POSIX_SPAWN, "posix_spawn'ed /bin/true"); }
static void fork_exec(void) { spawn_true(FORK_EXEC, "forked child exec'ing /bin/true"); }

/* daemon(1, 1): the original process exits 0; the daemon reports its pid, allocates (with
 * a thread too), reports "done" and ends with exit(0) or, in daemon_pthread_exit, with
 * pthread_exit of its only thread. The driver sees the pipe reach EOF (every copy of it
 * closed: the daemon is gone). */
static void *daemon_thread(void *arg) {
    (void)arg;
    churn(8 * MiB, 4096, 1);
    return NULL;
}

static void daemon_common(int use_pthread_exit) {
    churn(32 * MiB, 16384, 0);
    if (daemon(1, 1) != 0) die("daemon: %s", strerror(errno));
    char buf[64];
    snprintf(buf, sizeof buf, "pid %d\n", (int)getpid());
    say(buf);
    churn(32 * MiB, 16384, 1);
    pthread_t t;
    if (pthread_create(&t, NULL, daemon_thread, NULL) != 0) die("pthread_create failed");
    pthread_join(t, NULL);
    say("done\n");
    if (use_pthread_exit) pthread_exit(0);
    exit(0);
}

static void daemon_exit(void) { daemon_common(0); }
static void daemon_pthread_exit(void) { daemon_common(1); }

/* A forked child starts threads (two joined, two still running), allocates and frees
 * 16+ MiB and ends its main thread with pthread_exit: it must exit 0 promptly. */
static void *child_worker(void *arg) {
    churn(4 * MiB, 4096, 1);
    if (arg) sleep_ms(100);
    churn(2 * MiB, 64, 1);
    return NULL;
}

static void child_threads_pthread_exit(void) {
    churn(32 * MiB, 16384, 0);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            if (pthread_create(&t[i], NULL, child_worker, NULL) != 0) _exit(5);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < 2; i++) start_thread(child_worker, (void *)1, 1);
        churn(24 * MiB, 16384, 1);
        pthread_exit(0);
    }
    expect_exit0(wait_child(pid, "child that pthread_exits"), "child that pthread_exits");
    exit(0);
}

/* ---- gomalloc-only expectations: when the allocator's thread exists ------------------- */

/* VmRSS of this process in KiB (no allocation, as thread_count). */
static long rss_kib(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open /proc/self/status: %s", strerror(errno));
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[got > 0 ? got : 0] = 0;
    char *p = strstr(buf, "VmRSS:");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

/* Polls /proc/self/task for up to 5 s for the one thread of the program. */
static void expect_one_thread(const char *why) {
    double end = now_s() + 5;
    int n;
    while ((n = thread_count()) != 1 && now_s() < end) sleep_ms(20);
    if (n != 1) die("%d threads in /proc/self/task after 5 s, expected 1: %s", n, why);
}

/* Allocates 100 MiB and frees nothing: nothing to give back, so no allocator thread. */
static void alloc_only_one_thread(void) {
    for (int i = 0; i < 1600; i++) memset(malloc(32768), 1, 32768);       /* 50 MiB */
    for (int i = 0; i < 100000; i++) memset(malloc(256), 1, 256);         /* 24 MiB */
    for (int i = 0; i < 26; i++) memset(malloc(MiB), 1, MiB);             /* 26 MiB */
    expect_one_thread("a program that never frees must not see an allocator thread");
    exit(0);
}

/* Frees 200 MiB, sleeps 4 s: the memory went back to the OS with no further allocator
 * call (RSS under 64 MiB), and the idle thread is gone. */
static void idle_after_free_one_thread(void) {
    churn(120 * MiB, 16384, 1);
    churn(80 * MiB, MiB, 1);
    sleep_ms(4000);
    double end = now_s() + 5;
    long kib;
    while ((kib = rss_kib()) >= 64 * 1024 && now_s() < end) sleep_ms(20);
    if (kib >= 64 * 1024) die("RSS %ld KiB 9 s after freeing 200 MiB: the memory did not go back", kib);
    expect_one_thread("the allocator thread must end once idle");
    exit(0);
}

/* ---- driver --------------------------------------------------------------------------- */

enum expect { EXIT0, EXIT3, SIGTERM_AFTER_READY, DAEMON };

static const struct scenario {
    const char *name;
    void (*fn)(void);
    enum expect expect;
    double deadline; /* seconds, from the start of the process (or from SIGTERM) */
} scenarios[] = {
    {"worker_outlives_main", worker_outlives_main, EXIT0, 10},
    {"big_free_then_pthread_exit", big_free_then_pthread_exit, EXIT0, 10},
    {"aged_free_then_pthread_exit", aged_free_then_pthread_exit, EXIT0, 10},
    {"exit3", exit3, EXIT3, 10},
    {"worker_exit3", worker_exit3, EXIT3, 10},
    {"sigterm_after_main_exit", sigterm_after_main_exit, SIGTERM_AFTER_READY, 10},
    {"sigterm_main_in_pause", sigterm_main_in_pause, SIGTERM_AFTER_READY, 10},
    {"fork_from_thread", fork_from_thread, EXIT0, 10},
    {"fork_from_thread_pthread_exit", fork_from_thread_pthread_exit, EXIT0, 10},
    {"vfork_exec", vfork_exec, EXIT0, 20},
    {"posix_spawn", posix_spawn_true, EXIT0, 20},
    {"fork_exec", fork_exec, EXIT0, 20},
    {"daemon", daemon_exit, DAEMON, 10},
    {"daemon_pthread_exit", daemon_pthread_exit, DAEMON, 10},
    {"child_threads_pthread_exit", child_threads_pthread_exit, EXIT0, 10},
    {"alloc_only_one_thread", alloc_only_one_thread, EXIT0, 15},
    {"idle_after_free_one_thread", idle_after_free_one_thread, EXIT0, 20},
};
#define NSCEN (sizeof scenarios / sizeof scenarios[0])

static const struct scenario *find(const char *name) {
    for (size_t i = 0; i < NSCEN; i++)
        if (strcmp(scenarios[i].name, name) == 0) return &scenarios[i];
    return NULL;
}

static const char *status_str(int st, char *buf, size_t len) {
    if (WIFEXITED(st))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, len, "wait status 0x%x", st);
    return buf;
}

/* A process that outlived its deadline: report it, show whether SIGTERM ends it, kill. */
static void hung(const struct scenario *s, pid_t pid, const char *when) {
    char d[160];
    describe(pid, d, sizeof d);
    kill(pid, SIGTERM);
    int st = wait_deadline(pid, 1.5);
    const char *term = st == -1 ? "SIGTERM did not end it either (SIGKILL needed)"
                                : "SIGTERM then ended it";
    kill(-pid, SIGKILL); /* its process group: children it forked too */
    if (st == -1) waitpid(pid, &st, 0);
    printf("FAIL %s: still alive %s [%s]; %s\n", s->name, when, d, term);
}

/* Reads from `fd` until EOF or the deadline (absolute, now_s()); appends to buf. Returns
 * 1 on EOF, 0 at the deadline. */
static int read_until_eof(int fd, char *buf, size_t len, double end) {
    size_t used = strlen(buf);
    for (;;) {
        double left = end - now_s();
        if (left <= 0) return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t n = read(fd, buf + used, len - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 1;
        used += n;
        buf[used] = 0;
        if (used + 1 >= len) return 1;
    }
}

static int drive(const struct scenario *s, const char *self) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) die("pipe: %s", strerror(errno));
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        int w = dup(fds[1]); /* without O_CLOEXEC: the scenario inherits it */
        char fd[16];
        snprintf(fd, sizeof fd, "%d", w);
        execl(self, self, "--child", s->name, fd, (char *)NULL);
        perror("exec");
        _exit(127);
    }
    setpgid(pid, pid);
    close(fds[1]);
    char buf[256];
    int st;

    if (s->expect == SIGTERM_AFTER_READY) {
        char r = 0;
        struct pollfd p = {fds[0], POLLIN, 0};
        if (poll(&p, 1, (int)(s->deadline * 1000)) != 1 || read(fds[0], &r, 1) != 1 || r != 'R') {
            if (wait_deadline(pid, 0) == -1) {
                hung(s, pid, "and never got ready for SIGTERM");
            } else {
                printf("FAIL %s: ended before it was ready for SIGTERM\n", s->name);
            }
            return 1;
        }
        sleep_ms(50); /* let it settle into pause() */
        kill(pid, SIGTERM);
        double t1 = now_s();
        st = wait_deadline(pid, s->deadline);
        if (st == -1) {
            hung(s, pid, "after SIGTERM");
            return 1;
        }
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM) {
            printf("FAIL %s: %s, expected death by SIGTERM\n", s->name, status_str(st, buf, sizeof buf));
            return 1;
        }
        printf("ok   %s (SIGTERM ended it in %.2f s)\n", s->name, now_s() - t1);
        return 0;
    }

    st = wait_deadline(pid, s->deadline);
    if (st == -1) {
        char when[64];
        snprintf(when, sizeof when, "after %.0f s", s->deadline);
        hung(s, pid, when);
        return 1;
    }
    int want = s->expect == EXIT3 ? 3 : 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != want) {
        printf("FAIL %s: %s, expected exit status %d\n", s->name, status_str(st, buf, sizeof buf), want);
        return 1;
    }
    if (s->expect == DAEMON) {
        char out[256] = "";
        int eof = read_until_eof(fds[0], out, sizeof out, t0 + s->deadline);
        int dpid = 0;
        char *pl = strstr(out, "pid ");
        if (pl) dpid = atoi(pl + 4);
        for (char *c = out; *c; c++)
            if (*c == '\n') *c = '|'; /* one report line */
        if (!eof) {
            char d[160] = "pid unknown";
            if (dpid > 0) describe(dpid, d, sizeof d);
            if (dpid > 0) kill(dpid, SIGKILL);
            printf("FAIL %s: the daemon (pid %d) still alive after %.0f s [%s]; it wrote \"%s\"; killed\n",
                   s->name, dpid, s->deadline, d, out);
            return 1;
        }
        if (!strstr(out, "done|")) {
            printf("FAIL %s: the daemon ended without reporting \"done\" (it wrote \"%s\")\n", s->name, out);
            return 1;
        }
    }
    printf("ok   %s (%.2f s)\n", s->name, now_s() - t0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NSCEN; i++) puts(scenarios[i].name);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "--child") == 0) {
        const struct scenario *s = find(argv[2]);
        if (!s) die("unknown scenario %s", argv[2]);
        report_fd = atoi(argv[3]);
        main_thread = pthread_self();
        s->fn();
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCENARIO | --list\n", argv[0]);
        return 2;
    }
    const struct scenario *s = find(argv[1]);
    if (!s) {
        fprintf(stderr, "unknown scenario %s (see --list)\n", argv[1]);
        return 2;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) die("readlink /proc/self/exe: %s", strerror(errno));
    self[n] = 0;
    return drive(s, self);
}
