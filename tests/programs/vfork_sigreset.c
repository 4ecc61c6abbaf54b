/* A vfork child that resets SIGTRAP's and SIGSYS's handlers before exec (as
 * Go's and glibc's posix_spawn children do) must leave the parent's
 * handlers alone: the child has its own disposition table, though it
 * shares the parent's memory, where the runtime keeps its record of the
 * program's handlers of the signals it holds itself (runtime/core/src/
 * sys/signal.rs). Then the parent executes an int3 and is sent SIGSYS: both
 * must reach its handlers (natively they do; with a clobbered record the
 * int3 killed the process). Usage: vfork_sigreset */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t traps, syss;

static void on_trap(int sig) { (void)sig; traps++; }
static void on_sys(int sig) { (void)sig; syss++; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_trap;
    if (sigaction(SIGTRAP, &sa, 0) != 0) { perror("sigaction"); return 2; }
    sa.sa_handler = on_sys;
    if (sigaction(SIGSYS, &sa, 0) != 0) { perror("sigaction"); return 2; }
    for (int i = 0; i < 3; i++) {
        pid_t pid = vfork();
        if (pid == 0) {
            signal(SIGTRAP, SIG_DFL);
            signal(SIGSYS, SIG_DFL);
            execl("/bin/true", "true", (char *)0);
            _exit(127);
        }
        if (pid < 0) { perror("vfork"); return 2; }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child failed\n");
            return 2;
        }
    }
    __asm__ volatile("int3");
    kill(getpid(), SIGSYS);
    struct sigaction now;
    sigaction(SIGTRAP, 0, &now);
    printf("int3 handled: %d, SIGSYS handled: %d, SIGTRAP handler kept: %d\n", (int)traps, (int)syss,
           now.sa_handler == on_trap);
    return 0;
}
