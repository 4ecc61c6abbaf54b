/* Prints which signals this process starts with blocked, then shows that
 * the block is real: each of SIGUSR2, SIGTERM and SIGRTMIN+1 that is blocked
 * is raised, found pending (its default action would end the process) and
 * taken back with sigtimedwait. Given more arguments, it then execs them
 * (argv[1] with the rest): across execve the mask stays. Output is
 * deterministic. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void name(int sig) {
    if (sig >= SIGRTMIN) printf(" RTMIN+%d", sig - SIGRTMIN);
    else if (sigabbrev_np(sig)) printf(" %s", sigabbrev_np(sig));
    else printf(" %d", sig);
}

int main(int argc, char **argv) {
    sigset_t cur;
    if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0) {
        perror("sigprocmask");
        return 1;
    }
    printf("blocked:");
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&cur, sig) == 1) name(sig);
    printf("\n");
    printf("held:");
    int probes[] = {SIGUSR2, SIGTERM, SIGRTMIN + 1};
    for (unsigned i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        int sig = probes[i];
        if (sigismember(&cur, sig) != 1) continue;
        if (raise(sig) != 0) {
            perror("raise");
            return 1;
        }
        sigset_t pending, one;
        sigpending(&pending);
        if (sigismember(&pending, sig) != 1) {
            printf(" (not pending:");
            name(sig);
            printf(")");
            continue;
        }
        sigemptyset(&one);
        sigaddset(&one, sig);
        struct timespec zero = {0, 0};
        if (sigtimedwait(&one, NULL, &zero) != sig) {
            perror("sigtimedwait");
            return 1;
        }
        name(sig);
    }
    printf("\n");
    fflush(stdout);
    if (argc > 1) {
        execv(argv[1], argv + 1);
        perror("execv");
        return 127;
    }
    return 0;
}
