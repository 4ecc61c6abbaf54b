/* fork + exec + waitpid, posix_spawn, system(): process creation in every
 * shape glibc offers. Prints only what is the same on every run. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t parent = getpid();
    pid_t p = fork();
    if (p == 0) {
        if (getpid() == parent || getppid() != parent) { printf("child: wrong ids\n"); _exit(9); }
        execl("/bin/echo", "echo", "exec'd child says hi", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    printf("fork+exec: exited=%d code=%d\n", WIFEXITED(st), WEXITSTATUS(st));

    pid_t q = fork();
    if (q == 0) _exit(42);
    waitpid(q, &st, 0);
    printf("fork+_exit: code=%d\n", WEXITSTATUS(st));

    char *argv[] = {"sh", "-c", "echo spawned; exit 3", NULL};
    pid_t s;
    if (posix_spawn(&s, "/bin/sh", NULL, NULL, argv, environ) != 0) { printf("posix_spawn failed\n"); return 1; }
    waitpid(s, &st, 0);
    printf("posix_spawn: code=%d\n", WEXITSTATUS(st));

    int r = system("echo via system; exit 5");
    printf("system: code=%d\n", WEXITSTATUS(r));

    pid_t v = vfork();
    if (v == 0) { execl("/bin/true", "true", (char *)NULL); _exit(127); }
    waitpid(v, &st, 0);
    printf("vfork+exec: code=%d\n", WEXITSTATUS(st));
    return 0;
}
