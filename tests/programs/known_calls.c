/* Makes exactly known numbers of getppid calls, the independent count the
 * stats are checked against.
 *
 *   known_calls RAW VIA [THREADS [FORKS [EXECS]]]
 *
 * One round is RAW calls with a raw `syscall` instruction in the program's
 * own text (which only the trap fallback or load-time rewriting sees) and
 * VIA calls through glibc's syscall() (which patched glibc sends to the
 * gate). The main thread makes one round, then THREADS threads one round
 * each (joined), then FORKS child processes one round each (waited), then,
 * if EXECS > 0, the program execs itself with EXECS - 1, which repeats all
 * of it. Each image also makes one getppid() through glibc first. Every image prints its counts and how many calls agreed with the
 * answer they must have (the parent's pid); a child that saw a wrong one
 * exits 1, and so does the image that waited for it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long raw_n, via_n;

static long raw_getppid(void) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
    return r;
}

/* One round; returns how many answers equalled `want`. */
static long round_of(long want) {
    long same = 0;
    for (long i = 0; i < raw_n; i++) same += raw_getppid() == want;
    for (long i = 0; i < via_n; i++) same += syscall(SYS_getppid) == want;
    return same;
}

static long parent;

static void *thread_round(void *arg) {
    *(long *)arg = round_of(parent);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: known_calls RAW VIA [THREADS [FORKS [EXECS]]]\n");
        return 2;
    }
    raw_n = atol(argv[1]);
    via_n = atol(argv[2]);
    long threads = argc > 3 ? atol(argv[3]) : 0, forks = argc > 4 ? atol(argv[4]) : 0;
    long execs = argc > 5 ? atol(argv[5]) : 0;
    parent = getppid();
    long same = round_of(parent), calls = 1 + raw_n + via_n; /* with the getppid() above */
    pthread_t t[64];
    long got[64];
    if (threads > 64) threads = 64;
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, thread_round, &got[i]) != 0) return 3;
    for (long i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        same += got[i];
        calls += raw_n + via_n;
    }
    int bad_child = 0;
    for (long i = 0; i < forks; i++) {
        pid_t me = getpid(), c = fork();
        if (c < 0) return 4;
        if (c == 0) _exit(round_of(me) == raw_n + via_n ? 0 : 1);
        int st;
        if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad_child = 1;
        calls += raw_n + via_n;
    }
    printf("raw %ld via %ld threads %ld forks %ld: calls %ld, same in this process %ld, children %s\n", raw_n, via_n,
           threads, forks, calls, same, bad_child ? "BAD" : "ok");
    fflush(stdout);
    if (bad_child) return 1;
    if (execs > 0) {
        char n[32];
        snprintf(n, sizeof n, "%ld", execs - 1);
        char *args[] = {argv[0], argv[1], argv[2], argv[3], argv[4], n, NULL};
        execv(argv[0], args);
        return 5;
    }
    return 0;
}
