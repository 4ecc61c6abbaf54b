/* Bounded stress workloads with exactly known numbers of getppid calls
 * (the count the stats are checked against).
 *
 *   stress signals N   4 threads blocked in read(2) on pipes (no
 *                      SA_RESTART: each signal interrupts the call, which
 *                      the thread re-enters); N SIGUSR1 sent round-robin by
 *                      pthread_kill, each awaited (the handler, which
 *                      itself makes one getppid, counts it) before the next
 *   stress threads N   N threads created and joined, 16 alive at a time,
 *                      each making one getppid
 *   stress live N      N threads alive at once (64 KiB stacks), all waiting
 *                      on one barrier, then joined; each makes one getppid
 *   stress forkexec N  N times: fork, the child execs this program
 *                      (`stress child`), which makes one getppid and exits
 *                      7; the parent checks the status
 *
 * Each prints one line of counts; any mismatch exits 1. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long ppid(void) { return syscall(SYS_getppid); }

static atomic_long handled, interrupted;
static long parent;
static atomic_long wrong;

static void on_usr1(int sig) {
    (void)sig;
    int saved = errno;
    if (ppid() != parent) atomic_fetch_add(&wrong, 1);
    atomic_fetch_add(&handled, 1);
    errno = saved;
}

static int pipes[4][2];

static void *reader(void *arg) {
    int fd = pipes[(long)arg][0];
    char c;
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r == 1) return NULL; /* the end */
        if (r < 0 && errno == EINTR) {
            atomic_fetch_add(&interrupted, 1);
            continue;
        }
        atomic_fetch_add(&wrong, 1);
        return NULL;
    }
}

static int signals(long n) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t[4];
    for (long i = 0; i < 4; i++) {
        if (pipe(pipes[i]) != 0 || pthread_create(&t[i], NULL, reader, (void *)i) != 0) return 1;
    }
    for (long i = 0; i < n; i++) {
        long want = i + 1;
        pthread_kill(t[i % 4], SIGUSR1);
        while (atomic_load(&handled) < want) sched_yield();
    }
    for (long i = 0; i < 4; i++) {
        if (write(pipes[i][1], "x", 1) != 1) return 1;
        pthread_join(t[i], NULL);
    }
    /* A signal may land before its reader is inside read(): interrupted
     * counts only those that found it there. */
    long h = atomic_load(&handled), w = atomic_load(&wrong);
    printf("signals %ld handled %ld wrong %ld\n", n, h, w);
    return h == n && w == 0 && atomic_load(&interrupted) <= n ? 0 : 1;
}

static atomic_long ran;

static void *one(void *arg) {
    (void)arg;
    if (ppid() != parent) atomic_fetch_add(&wrong, 1);
    atomic_fetch_add(&ran, 1);
    return NULL;
}

static int threads(long n) {
    pthread_t t[16];
    for (long done = 0; done < n;) {
        long k = n - done < 16 ? n - done : 16;
        for (long i = 0; i < k; i++)
            if (pthread_create(&t[i], NULL, one, NULL) != 0) return 1;
        for (long i = 0; i < k; i++) pthread_join(t[i], NULL);
        done += k;
    }
    printf("threads %ld ran %ld wrong %ld\n", n, atomic_load(&ran), atomic_load(&wrong));
    return atomic_load(&ran) == n && atomic_load(&wrong) == 0 ? 0 : 1;
}

static pthread_barrier_t all;

static void *live_one(void *arg) {
    one(arg);
    pthread_barrier_wait(&all);
    return NULL;
}

static int live(long n) {
    pthread_t *t = calloc(n, sizeof *t);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 64 * 1024);
    pthread_barrier_init(&all, NULL, n + 1);
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], &at, live_one, NULL) != 0) {
            printf("live %ld: thread %ld could not be created\n", n, i);
            return 1;
        }
    pthread_barrier_wait(&all);
    for (long i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("live %ld ran %ld wrong %ld\n", n, atomic_load(&ran), atomic_load(&wrong));
    return atomic_load(&ran) == n && atomic_load(&wrong) == 0 ? 0 : 1;
}

static int forkexec(const char *self, long n) {
    long ok = 0;
    for (long i = 0; i < n; i++) {
        pid_t c = fork();
        if (c < 0) return 1;
        if (c == 0) {
            execl(self, self, "child", (char *)NULL);
            _exit(100);
        }
        int st;
        if (waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 7) ok++;
    }
    printf("forkexec %ld ok %ld\n", n, ok);
    return ok == n ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "child") == 0) return ppid() == getppid() ? 7 : 8; /* 2 getppid */
    if (argc != 3) {
        fprintf(stderr, "usage: stress signals|threads|forkexec N\n");
        return 2;
    }
    long n = atol(argv[2]);
    parent = getppid();
    if (strcmp(argv[1], "signals") == 0) return signals(n);
    if (strcmp(argv[1], "threads") == 0) return threads(n);
    if (strcmp(argv[1], "live") == 0) return live(n);
    if (strcmp(argv[1], "forkexec") == 0) return forkexec(argv[0], n);
    return 2;
}
