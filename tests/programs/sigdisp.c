/* Prints which signals this process ignores, then, given more arguments,
 * execs them (argv[1] with the rest): across execve an ignored signal stays
 * ignored, a handled one goes back to its default. Output is deterministic. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("ignored:");
    for (int sig = 1; sig < 32; sig++) {
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN) printf(" %s", sigabbrev_np(sig));
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
