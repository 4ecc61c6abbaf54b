/* fork + exec + waitpid, posix_spawn, and signals: handlers with and without
 * SA_RESTART, a signal during a blocking read. */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile sig_atomic_t hits;
static void on_signal(int sig) { (void)sig; hits++; }

/* A child writes into a pipe after `delay_ms` while the parent blocks in read. */
static int read_with_signal(int restart) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, 0);
    int p[2];
    if (pipe(p) != 0) return -100;
    pid_t writer = fork();
    if (writer == 0) {
        usleep(300 * 1000);
        if (write(p[1], "late", 4) != 4) _exit(1);
        _exit(0);
    }
    close(p[1]);
    struct itimerval it = {{0, 0}, {0, 50 * 1000}};
    setitimer(ITIMER_REAL, &it, 0);
    char buf[8];
    ssize_t n = read(p[0], buf, sizeof buf);
    int err = n < 0 ? errno : 0;
    int st;
    waitpid(writer, &st, 0);
    close(p[0]);
    if (n < 0) return err == EINTR ? -1 : -2;
    return (int)n;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("child says %s\n", argv[2]);
        return 17;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "child", "hello", (char *)0);
        _exit(99);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("fork+exec child exited %d\n", WEXITSTATUS(st));

    pid_t sp;
    char *sargs[] = {"sh", "-c", "echo spawned; exit 7", 0};
    int r = posix_spawn(&sp, "/bin/sh", 0, 0, sargs, environ);
    waitpid(sp, &st, 0);
    printf("posix_spawn %d exited %d\n", r, WEXITSTATUS(st));
    char *self[] = {argv[0], "child", "spawned-self", 0};
    r = posix_spawn(&sp, "/proc/self/exe", 0, 0, self, environ);
    waitpid(sp, &st, 0);
    printf("posix_spawn self %d exited %d\n", r, WEXITSTATUS(st));

    printf("read with SA_RESTART: %d\n", read_with_signal(1));
    printf("read without SA_RESTART: %d (EINTR)\n", read_with_signal(0));
    printf("handler ran %d times\n", (int)hits);

    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, 0);
    kill(getpid(), SIGUSR2);
    int got;
    sigwait(&set, &got);
    printf("raise ok %d, sigwait got SIGUSR2 %d\n", (int)hits, got == SIGUSR2);
    return 3;
}
