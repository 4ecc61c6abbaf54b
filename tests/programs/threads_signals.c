/* Threads and signals together: a mutex/condvar work queue under contention,
 * handlers with SA_RESTART interrupting a blocking read, an alternate signal
 * stack, directed signals to threads, and a timer. Output is deterministic. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define WORKERS 8
#define ITEMS 20000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int queue, done_items;
static long sum;
static atomic_int usr1_hits, usr2_hits, alarm_hits;
static int pipefd[2];
static volatile sig_atomic_t on_alt;
static char altstack[64 * 1024];

static void on_usr1(int s) { (void)s; atomic_fetch_add(&usr1_hits, 1); }
static void on_usr2(int s) {
    (void)s;
    char here;
    if (&here >= altstack && &here < altstack + sizeof altstack) on_alt = 1;
    atomic_fetch_add(&usr2_hits, 1);
    /* Syscalls inside a handler. */
    getpid();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
}
static void on_alarm(int s) { (void)s; atomic_fetch_add(&alarm_hits, 1); }

static void *worker(void *arg) {
    long id = (long)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (queue == 0 && done_items < ITEMS) pthread_cond_wait(&cv, &mu);
        if (done_items >= ITEMS) { pthread_mutex_unlock(&mu); break; }
        queue--;
        done_items++;
        sum += id + 1;
        if (done_items >= ITEMS) pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    char buf[16];
    ssize_t n;
    do n = read(pipefd[0], buf, sizeof buf); while (n < 0 && errno == EINTR);
    return (void *)(long)n;
}

static void install(int sig, void (*h)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

int main(void) {
    install(SIGUSR1, on_usr1, SA_RESTART);
    install(SIGUSR2, on_usr2, SA_RESTART | SA_ONSTACK);
    install(SIGALRM, on_alarm, SA_RESTART);
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);

    pthread_t w[WORKERS];
    for (long i = 0; i < WORKERS; i++) pthread_create(&w[i], NULL, worker, (void *)i);
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&mu);
        queue++;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(w[i], NULL);
    printf("work queue: %d items done by %d threads\n", done_items, WORKERS);

    /* A reader blocked in read(2) keeps being interrupted by SA_RESTART
     * signals; then the data arrives. */
    pipe(pipefd);
    pthread_t r;
    pthread_create(&r, NULL, reader, NULL);
    usleep(20000);
    for (int i = 0; i < 200; i++) {
        pthread_kill(r, SIGUSR1);
        if (i % 20 == 0) usleep(1000);
    }
    while (atomic_load(&usr1_hits) < 1) usleep(1000);
    write(pipefd[1], "hello", 5);
    void *got;
    pthread_join(r, &got);
    printf("blocked read got %ld bytes after signals\n", (long)got);

    /* Handlers on the alternate stack making syscalls. */
    for (int i = 0; i < 100; i++) raise(SIGUSR2);
    printf("usr2 handled %d times, on the alternate stack: %s\n", atomic_load(&usr2_hits), on_alt ? "yes" : "no");

    /* A 1 ms interval timer, 20 ticks. */
    struct itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    while (atomic_load(&alarm_hits) < 20) pause();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("timer ticked at least 20 times\n");
    return 0;
}
