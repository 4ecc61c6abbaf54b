/* Process creation that shares the parent's memory: glibc's posix_spawn
 * (a CLONE_VM|CLONE_VFORK child on a stack of its own, which system() and
 * popen() use too) and vfork, while the parent holds loopback TCP
 * connections (ring connections under `shunt run --transport shm`). One
 * scenario per argument, printed as a transcript without fd numbers,
 * ports or timings; the tests compare it with the same run natively.
 *
 *   posix-spawn       file actions on ring and ordinary fds, SETSIGMASK,
 *                     SETSIGDEF, closefrom, a failed spawn; the parent's
 *                     connections, handlers and mask afterwards
 *   system-popen      system() and popen() between uses of a connection
 *   vfork-mask        vfork children that change their signal mask, then
 *                     _exit or exec: the parent's mask is its own
 *   exec-arrays N R   R vfork+exec and R posix_spawn of /bin/true with N
 *                     arguments: the parent's address space stays flat
 *
 * Every wait is a poll with a timeout or a waitpid, never a sleep. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loopback.h"

extern char **environ;

/* Reads exactly n bytes (each wait at most 10 s) and prints them. */
static void show_exactly(const char *what, int fd, int n) {
    char buf[256];
    int got = 0;
    if (n > (int)sizeof buf) n = sizeof buf;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10000) != 1) {
            printf("%s: timed out after %d bytes\n", what, got);
            fflush(stdout);
            return;
        }
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            printf("%s: %s after %d bytes\n", what, r == 0 ? "EOF" : strerror(errno), got);
            fflush(stdout);
            return;
        }
        got += r;
    }
    printf("%s: \"%.*s\"\n", what, got, buf);
    fflush(stdout);
}

static void wr(int fd, const char *s) {
    ssize_t n = send(fd, s, strlen(s), MSG_NOSIGNAL);
    if (n != (ssize_t)strlen(s)) printf("send \"%s\": %s\n", s, n < 0 ? strerror(errno) : "short");
}

/* Both directions of a connection, one message each. */
static void both_ways(const char *what, int c, int a) {
    char m[64], n[64];
    snprintf(m, sizeof m, "%s: c->a", what);
    snprintf(n, sizeof n, "%s: a->c", what);
    wr(c, m);
    show_exactly("  read", a, strlen(m));
    wr(a, n);
    show_exactly("  read", c, strlen(n));
}

static const struct { int sig; const char *name; } SIGS[] = {
    {SIGHUP, "HUP"}, {SIGINT, "INT"}, {SIGTRAP, "TRAP"}, {SIGUSR1, "USR1"}, {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"}, {SIGTERM, "TERM"}, {SIGCHLD, "CHLD"}, {SIGSYS, "SYS"},
};

static void show_set(const char *what, const sigset_t *s) {
    printf("%s:", what);
    for (unsigned i = 0; i < sizeof SIGS / sizeof SIGS[0]; i++)
        if (sigismember(s, SIGS[i].sig)) printf(" %s", SIGS[i].name);
    printf("\n");
    fflush(stdout);
}

static void show_mask(const char *what) {
    sigset_t old;
    sigemptyset(&old);
    if (sigprocmask(SIG_BLOCK, NULL, &old) != 0) die("sigprocmask");
    show_set(what, &old);
}

static const char *disposition(int sig) {
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) != 0) return "?";
    if (sa.sa_handler == SIG_DFL) return "default";
    if (sa.sa_handler == SIG_IGN) return "ignored";
    return "handler";
}

static void wait_child(const char *what, pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    if (WIFEXITED(st)) printf("%s: exit %d\n", what, WEXITSTATUS(st));
    else printf("%s: signal %d\n", what, WTERMSIG(st));
    fflush(stdout);
}

static volatile sig_atomic_t usr1s, syss;
static void on_usr1(int sig) { (void)sig; usr1s++; }
static void on_sys(int sig) { (void)sig; syss++; }

/* posix_spawn with file actions that touch ring connections and ordinary
 * fds of the parent: the child's dup2/close/closefrom are its own (its fd
 * table is its own); the parent's connections go on as they were. */
static void sc_posix_spawn(const char *self) {
    int c, a, c2, a2;
    pair(&c, &a);
    pair(&c2, &a2);
    both_ways("before", c, a);
    both_ways("before, second", c2, a2);
    int p[2];
    if (pipe(p) != 0) die("pipe");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_sys;
    sigaction(SIGSYS, &sa, NULL);
    signal(SIGUSR2, SIG_IGN);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGHUP);
    sigprocmask(SIG_BLOCK, &m, NULL);
    show_mask("parent blocks");

    /* 1: the connector end dup2'd onto the number of the parent's pipe
     * write end (the exec'd child writes on it), the pipe's read end onto
     * the number of the second connection's connector (the child reads the
     * pipe there), the acceptor end closed. */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, c, p[1]);
    posix_spawn_file_actions_adddup2(&fa, p[0], c2);
    posix_spawn_file_actions_addclose(&fa, a);
    posix_spawn_file_actions_addclose(&fa, a2);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char w[16], r[16];
    snprintf(w, sizeof w, "%d", p[1]);
    snprintf(r, sizeof r, "%d", c2);
    char *argv1[] = {(char *)self, "child-io", w, r, NULL};
    pid_t pid;
    int e = posix_spawn(&pid, self, &fa, NULL, argv1, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        printf("posix_spawn: %s\n", strerror(e));
        exit(2);
    }
    /* Through the parent's own pipe, which the child reads at c2's number. */
    if (write(p[1], "through the pipe", 16) != 16) die("write pipe");
    close(p[1]);
    close(p[0]);
    wait_child("spawned child", pid);
    show_exactly("the child wrote on the connection", a, 23);
    both_ways("after spawn", c, a);
    both_ways("after spawn, second", c2, a2);

    /* 2: a signal mask and default dispositions for the child, and every
     * fd from 3 up closed. */
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t cm, cd;
    sigemptyset(&cm);
    sigaddset(&cm, SIGUSR2);
    sigaddset(&cm, SIGSYS);
    sigaddset(&cm, SIGTRAP);
    sigaddset(&cm, SIGTERM);
    posix_spawnattr_setsigmask(&at, &cm);
    sigemptyset(&cd);
    sigaddset(&cd, SIGUSR2);
    sigaddset(&cd, SIGSYS);
    sigaddset(&cd, SIGTRAP);
    posix_spawnattr_setsigdefault(&at, &cd);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    char *argv2[] = {(char *)self, "child-signals", NULL};
    e = posix_spawn(&pid, self, &fa, &at, argv2, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e != 0) {
        printf("posix_spawn: %s\n", strerror(e));
        exit(2);
    }
    wait_child("spawned child with a mask", pid);
    both_ways("after the masked spawn", c, a);
    both_ways("after the masked spawn, second", c2, a2);

    /* 3: a spawn whose exec fails, after closing both ends of a
     * connection in the child. */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, c);
    posix_spawn_file_actions_addclose(&fa, a);
    char *argv3[] = {"/nonexistent/program", NULL};
    e = posix_spawn(&pid, "/nonexistent/program", &fa, NULL, argv3, environ);
    posix_spawn_file_actions_destroy(&fa);
    printf("spawn of a missing program: %s\n", e == 0 ? "started" : strerror(e));
    if (e == 0) wait_child("missing program", pid);
    both_ways("after the failed spawn", c, a);

    /* The parent's own state. */
    show_mask("parent blocks after the spawns");
    printf("dispositions: USR1 %s, SYS %s, USR2 %s\n", disposition(SIGUSR1), disposition(SIGSYS),
           disposition(SIGUSR2));
    raise(SIGUSR1);
    kill(getpid(), SIGSYS);
    printf("handled: USR1 %d, SYS %d\n", (int)usr1s, (int)syss);
    close(c);
    show_exactly("after the connector's close", a, 1);
    close(a);
    close(c2);
    close(a2);
}

/* The exec'd child of spawn 1: writes on the connection at `w` and reads
 * the pipe at `r`. */
static int child_io(int w, int r) {
    char buf[64];
    int got = 0;
    ssize_t n;
    while ((n = read(r, buf + got, sizeof buf - got)) > 0) got += n;
    printf("child read from the pipe: \"%.*s\"\n", got, buf);
    fflush(stdout);
    wr(w, "from the spawned child;");
    return 0;
}

/* The exec'd child of spawn 2: its mask and dispositions, and which fds
 * from 3 up are open. */
static int child_signals(void) {
    show_mask("child blocks");
    printf("child dispositions: USR1 %s, USR2 %s, SYS %s, TRAP %s\n", disposition(SIGUSR1),
           disposition(SIGUSR2), disposition(SIGSYS), disposition(SIGTRAP));
    /* Below 1000: an instance's segment broker sits at 1000 under shunt
     * (and closefrom leaves it to the instance). */
    int open_fds = 0;
    for (int fd = 3; fd < 1000; fd++)
        if (fcntl(fd, F_GETFD) >= 0) open_fds++;
    printf("child fds open from 3 to 999: %d\n", open_fds);
    fflush(stdout);
    return 0;
}

static void sc_system_popen(void) {
    int c, a;
    pair(&c, &a);
    both_ways("before", c, a);
    int st = system("echo via system; exit 5");
    printf("system: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    both_ways("after system", c, a);
    FILE *f = popen("echo from popen", "r");
    if (!f) die("popen r");
    char line[64];
    if (fgets(line, sizeof line, f)) printf("popen read: %s", line);
    st = pclose(f);
    printf("pclose: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    both_ways("after popen r", c, a);
    fflush(stdout);
    f = popen("cat; exit 4", "w");
    if (!f) die("popen w");
    fputs("written to popen\n", f);
    st = pclose(f);
    printf("pclose: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    both_ways("after popen w", c, a);
    close(c);
    show_exactly("after the connector's close", a, 1);
    close(a);
}

static void block(int how, int a, int b, int c) {
    sigset_t s;
    sigemptyset(&s);
    if (a) sigaddset(&s, a);
    if (b) sigaddset(&s, b);
    if (c) sigaddset(&s, c);
    sigprocmask(how, &s, NULL);
}

/* vfork children change their own mask (the runtime's signals among
 * them), then _exit or exec: the parent's mask, as it reads it, is its
 * own. */
static void sc_vfork_mask(const char *self) {
    block(SIG_BLOCK, SIGUSR1, 0, 0);
    show_mask("parent");
    pid_t pid = vfork();
    if (pid == 0) {
        block(SIG_BLOCK, SIGSYS, SIGTRAP, SIGUSR2);
        _exit(0);
    }
    wait_child("vfork child blocked SYS TRAP USR2", pid);
    show_mask("parent");
    pid = vfork();
    if (pid == 0) {
        block(SIG_BLOCK, SIGSYS, SIGTRAP, SIGTERM);
        execl(self, self, "child-mask", (char *)NULL);
        _exit(127);
    }
    wait_child("vfork child blocked SYS TRAP TERM and exec'd", pid);
    show_mask("parent");
    block(SIG_BLOCK, SIGSYS, SIGTRAP, 0);
    show_mask("parent");
    pid = vfork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        _exit(0);
    }
    wait_child("vfork child cleared its mask", pid);
    show_mask("parent");
    pid = vfork();
    if (pid == 0) {
        block(SIG_UNBLOCK, SIGSYS, 0, 0);
        execl(self, self, "child-mask", (char *)NULL);
        _exit(127);
    }
    wait_child("vfork child unblocked SYS and exec'd", pid);
    show_mask("parent");
    pid = vfork();
    if (pid == 0) {
        block(SIG_UNBLOCK, SIGTRAP, 0, 0);
        execl("/nonexistent/program", "x", (char *)NULL);
        _exit(3);
    }
    wait_child("vfork child unblocked TRAP, its exec failed", pid);
    show_mask("parent");
}

/* The parent's address space: mappings and VmSize (kB). */
static void space(long *maps, long *vm) {
    *maps = 0;
    *vm = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) die("maps");
    int ch, last = '\n';
    while ((ch = fgetc(f)) != EOF) {
        if (ch == '\n') (*maps)++;
        last = ch;
    }
    (void)last;
    fclose(f);
    f = fopen("/proc/self/status", "r");
    if (!f) die("status");
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7)) *vm = atol(line + 7);
    fclose(f);
}

static void sc_exec_arrays(int n, int rounds) {
    char **argv = calloc(n + 2, sizeof *argv);
    if (!argv) die("calloc");
    argv[0] = "true";
    for (int i = 1; i <= n; i++) argv[i] = "an-argument";
    for (int shape = 0; shape < 2; shape++) {
        long maps0 = 0, vm0 = 0, maps1, vm1;
        int failed = 0;
        for (int i = 0; i < rounds + 5; i++) {
            if (i == 5) space(&maps0, &vm0);
            pid_t pid;
            if (shape == 0) {
                pid = vfork();
                if (pid == 0) {
                    execv("/bin/true", argv);
                    _exit(127);
                }
            } else if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0) {
                pid = -1;
            }
            int st;
            if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
        }
        space(&maps1, &vm1);
        printf("%s + exec of %d arguments, %d times: %d failed; mappings grew by more than 4: %s; "
               "VmSize grew by 1 MiB or more: %s\n",
               shape == 0 ? "vfork" : "posix_spawn", n, rounds, failed, maps1 - maps0 > 4 ? "yes" : "no",
               vm1 - vm0 >= 1024 ? "yes" : "no");
        if (getenv("SPAWN_VERBOSE"))
            fprintf(stderr, "maps %ld -> %ld, VmSize %ld -> %ld kB\n", maps0, maps1, vm0, vm1);
    }
    free(argv);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: spawn SCENARIO\n");
        return 2;
    }
    const char *sc = argv[1];
    if (!strcmp(sc, "posix-spawn")) sc_posix_spawn(argv[0]);
    else if (!strcmp(sc, "system-popen")) sc_system_popen();
    else if (!strcmp(sc, "vfork-mask")) sc_vfork_mask(argv[0]);
    else if (!strcmp(sc, "exec-arrays") && argc == 4) sc_exec_arrays(atoi(argv[2]), atoi(argv[3]));
    else if (!strcmp(sc, "child-io") && argc == 4) return child_io(atoi(argv[2]), atoi(argv[3]));
    else if (!strcmp(sc, "child-signals")) return child_signals();
    else if (!strcmp(sc, "child-mask")) {
        show_mask("  exec'd child blocks");
        return 0;
    } else {
        fprintf(stderr, "unknown scenario %s\n", sc);
        return 2;
    }
    return 0;
}
