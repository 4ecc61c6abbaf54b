/* Many threads running the same generated syscall site while it is
 * rewritten on its first trap (the cross-modifying case of
 * runtime/core/src/lazy.rs).
 *
 * Each of R rounds copies `mov $186,%eax; syscall; ret` (gettid) into a
 * fresh anonymous mapping, then T threads, released together, call it
 * N1 times each (phase 1: the site traps and is rewritten under them),
 * meet at a barrier, and call it N2 more times (phase 2: the rewritten
 * site). Every call's result is checked against the thread's own tid, so
 * a call resumed at the wrong place or with a clobbered register shows.
 * With S != 0 a further thread sends SIGUSR1 to the workers in a loop
 * while they run (the handler counts, and calls the routine too when S is
 * 2, so that an int3 or a trap can land inside a handler).
 *
 * The output (compared natively and under shunt) is deterministic; the
 * number of calls made from handlers, which varies, is written to the file
 * COUNTS. Usage:
 *   jit_threads T N1 N2 R S COUNTS */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef long (*fn)(void);

static const unsigned char code[] = {0xb8, 186, 0, 0, 0, 0x0f, 0x05, 0xc3};

static long T, N1, N2, R, S;
static fn _Atomic cur;
static atomic_int go, stop;
static atomic_long bad, handler_calls, signals_sent;
static pthread_barrier_t mid, end;
static pid_t tids[256];

static fn jit(void) {
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    memset(p, 0x90, 64);
    memcpy(p + 64, code, sizeof code);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) { perror("mprotect"); exit(2); }
    return (fn)(p + 64);
}

static void on_usr1(int sig) {
    (void)sig;
    if (S == 2) {
        /* Before the first round there is no routine yet: no call, and
         * nothing counted (the test counts two gettid per handler call). */
        fn f = atomic_load(&cur);
        if (!f) return;
        if (f() != syscall(SYS_gettid)) atomic_fetch_add(&bad, 1);
        atomic_fetch_add(&handler_calls, 1);
    }
}

static void *worker(void *arg) {
    long i = (long)arg;
    pid_t me = (pid_t)syscall(SYS_gettid);
    tids[i] = me;
    for (long r = 0; r < R; r++) {
        /* Round r starts when `go` reaches r + 1. */
        while (atomic_load(&go) <= r) sched_yield();
        fn f = atomic_load(&cur);
        for (long k = 0; k < N1; k++)
            if (f() != me) atomic_fetch_add(&bad, 1);
        pthread_barrier_wait(&mid);
        for (long k = 0; k < N2; k++)
            if (f() != me) atomic_fetch_add(&bad, 1);
        pthread_barrier_wait(&end);
    }
    return 0;
}

static void *sender(void *arg) {
    (void)arg;
    pid_t pid = getpid();
    while (!atomic_load(&stop)) {
        for (long i = 0; i < T && !atomic_load(&stop); i++) {
            if (tids[i] && syscall(SYS_tgkill, pid, tids[i], SIGUSR1) == 0) atomic_fetch_add(&signals_sent, 1);
        }
        sched_yield();
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: jit_threads T N1 N2 R S COUNTS\n"); return 2; }
    T = atol(argv[1]); N1 = atol(argv[2]); N2 = atol(argv[3]); R = atol(argv[4]); S = atol(argv[5]);
    if (T < 1 || T > 256 || R < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, 0) != 0) { perror("sigaction"); return 2; }
    pthread_barrier_init(&mid, 0, (unsigned)T + 1);
    pthread_barrier_init(&end, 0, (unsigned)T + 1);
    pthread_t w[256], s;
    for (long i = 0; i < T; i++)
        if (pthread_create(&w[i], 0, worker, (void *)i) != 0) { fprintf(stderr, "pthread_create\n"); return 2; }
    if (S && pthread_create(&s, 0, sender, 0) != 0) { fprintf(stderr, "pthread_create\n"); return 2; }
    for (long r = 0; r < R; r++) {
        atomic_store(&cur, jit());
        atomic_store(&go, (int)r + 1);
        pthread_barrier_wait(&mid);
        pthread_barrier_wait(&end);
        printf("round %ld: %ld threads x %ld + %ld calls\n", r, T, N1, N2);
    }
    atomic_store(&stop, 1);
    for (long i = 0; i < T; i++) pthread_join(w[i], 0);
    if (S) pthread_join(s, 0);
    printf("wrong results: %ld\n", atomic_load(&bad));
    FILE *counts = fopen(argv[6], "w");
    if (!counts) { perror(argv[6]); return 2; }
    fprintf(counts, "signals sent: %ld, calls from handlers: %ld\n", atomic_load(&signals_sent),
            atomic_load(&handler_calls));
    if (fclose(counts) != 0) { perror(argv[6]); return 2; }
    return atomic_load(&bad) != 0;
}
