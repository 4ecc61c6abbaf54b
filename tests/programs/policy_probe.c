/* Makes the calls the policy tests restrict and prints what came back. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "ptrace") == 0) {
        long r = ptrace(PTRACE_TRACEME, 0, 0, 0);
        printf("ptrace: %ld %s\n", r, r < 0 ? strerrorname_np(errno) : "ok");
    } else if (argc > 2 && strcmp(argv[1], "mkdir") == 0) {
        int r = mkdir(argv[2], 0700);
        printf("mkdir: %d %s\n", r, r < 0 ? strerrorname_np(errno) : "ok");
        r = mkdir(argv[2], 0700);
        printf("mkdir again: %d %s\n", r, r < 0 ? strerrorname_np(errno) : "ok");
    } else if (argc > 1 && strcmp(argv[1], "unshare") == 0) {
        printf("calling unshare\n");
        int r = unshare(CLONE_NEWUTS);
        printf("unshare returned %d\n", r);
    }
    return 0;
}
