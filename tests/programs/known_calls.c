/* Makes exactly known numbers of getppid calls, the independent count the
 * stats are checked against: argv[1] with a raw `syscall` instruction in
 * the program's own text (which only the trap fallback sees), argv[2]
 * through glibc's syscall() (which patched glibc sends to the gate). It
 * prints the counts and how many calls agreed with the first answer. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static long raw_getppid(void) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
    return r;
}

int main(int argc, char **argv) {
    long raw = argc > 1 ? atol(argv[1]) : 0, via = argc > 2 ? atol(argv[2]) : 0;
    long first = -1, same = 0;
    for (long i = 0; i < raw; i++) {
        long r = raw_getppid();
        if (first < 0) first = r;
        same += r == first;
    }
    for (long i = 0; i < via; i++) {
        long r = syscall(SYS_getppid);
        if (first < 0) first = r;
        same += r == first;
    }
    printf("raw %ld via %ld same %ld\n", raw, via, same);
    return 0;
}
