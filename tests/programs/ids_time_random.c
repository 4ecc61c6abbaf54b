/* Raw system calls of the calls the runtime emulates (ids, uname, time,
 * random), checked against each other and across fork. Prints only what is
 * the same natively and under shunt. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long sc(long nr, long a, long b, long c) { return syscall(nr, a, b, c); }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    long pid = sc(SYS_getpid, 0, 0, 0), tid = sc(SYS_gettid, 0, 0, 0);
    printf("pid == tid in the main thread: %s\n", pid == tid ? "yes" : "no");
    for (int i = 0; i < 1000; i++)
        if (sc(SYS_getpid, 0, 0, 0) != pid) { printf("getpid unstable\n"); return 1; }
    long ids[4] = {0};
    for (int i = 0; i < 3; i++) {
        long now[4] = {sc(SYS_getuid, 0, 0, 0), sc(SYS_geteuid, 0, 0, 0), sc(SYS_getgid, 0, 0, 0), sc(SYS_getegid, 0, 0, 0)};
        if (i > 0 && memcmp(now, ids, sizeof ids) != 0) { printf("ids unstable\n"); return 1; }
        memcpy(ids, now, sizeof ids);
    }
    printf("uid %ld euid %ld gid %ld egid %ld\n", ids[0], ids[1], ids[2], ids[3]);
    unsigned r[3], g[3];
    sc(SYS_getresuid, (long)&r[0], (long)&r[1], (long)&r[2]);
    sc(SYS_getresgid, (long)&g[0], (long)&g[1], (long)&g[2]);
    printf("resuid %u %u %u resgid %u %u %u\n", r[0], r[1], r[2], g[0], g[1], g[2]);

    struct utsname a, b;
    sc(SYS_uname, (long)&a, 0, 0);
    uname(&b);
    printf("uname %s %s: consistent: %s\n", a.sysname, a.machine, memcmp(&a, &b, sizeof a) == 0 ? "yes" : "no");

    struct timespec t1, t2;
    sc(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&t1, 0);
    for (int i = 0; i < 1000; i++) sc(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&t2, 0);
    printf("monotonic clock moves forward: %s\n",
           (t2.tv_sec > t1.tv_sec || (t2.tv_sec == t1.tv_sec && t2.tv_nsec >= t1.tv_nsec)) ? "yes" : "no");
    long now = sc(SYS_time, 0, 0, 0);
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    printf("time() agrees with CLOCK_REALTIME: %s\n", (rt.tv_sec - now) <= 1 ? "yes" : "no");
    struct timeval tv;
    printf("gettimeofday: %ld\n", sc(SYS_gettimeofday, (long)&tv, 0, 0));

    unsigned char x[64], y[64];
    printf("getrandom: %ld %ld\n", sc(SYS_getrandom, (long)x, 64, 0), sc(SYS_getrandom, (long)y, 64, 0));
    printf("two draws differ: %s\n", memcmp(x, y, 64) ? "yes" : "no");
    printf("bad flags: %ld\n", sc(SYS_getrandom, (long)x, 8, 0x100));

    int fds[2];
    pipe(fds);
    pid_t c = fork();
    if (c == 0) {
        unsigned char z[64];
        long me = sc(SYS_getpid, 0, 0, 0);
        sc(SYS_getrandom, (long)z, 64, 0);
        write(fds[1], &me, sizeof me);
        write(fds[1], z, 64);
        _exit(0);
    }
    unsigned char mine[64], theirs[64];
    long childpid;
    sc(SYS_getrandom, (long)mine, 64, 0);
    read(fds[0], &childpid, sizeof childpid);
    read(fds[0], theirs, 64);
    waitpid(c, NULL, 0);
    printf("child's getpid is its own: %s\n", childpid == c ? "yes" : "no");
    printf("parent and child random bytes differ after fork: %s\n", memcmp(mine, theirs, 64) ? "yes" : "no");
    printf("parent's getpid unchanged: %s\n", sc(SYS_getpid, 0, 0, 0) == pid ? "yes" : "no");
    return 0;
}
