/* Generated code making system calls: the case load-time plans cannot
 * reach. Each routine is copied into an anonymous mapping (written, then
 * made read+exec) and called in a loop:
 *   A  mov $107,%eax; syscall; ret          geteuid
 *   B  mov $102,%rax; syscall; ret          getuid
 *   C  mov %rdi,%rax; syscall; ret          getgid (nr from a register)
 *   D  mov $108,%eax; syscall; ret          getegid, while a second thread runs
 * Under shunt, A, B and D trap once and are then rewritten (D while
 * another thread exists); C matches no known pattern and traps every time. Prints each result and the count, so the native run and the
 * shunt run must agree. Usage: jit_syscalls N */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef long (*fn)(long);

static fn jit(const unsigned char *code, size_t len) {
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    /* A few bytes of nops first, so that the bytes before the routine are
     * mapped and are no prefix. */
    memset(p, 0x90, 64);
    memcpy(p + 64, code, len);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) { perror("mprotect"); exit(2); }
    return (fn)(p + 64);
}

static int fds[2];

static void *waiter(void *arg) {
    char c;
    (void)arg;
    if (read(fds[0], &c, 1) != 1) exit(3);
    return 0;
}

static long loop(fn f, long arg, long n) {
    long r = f(arg);
    for (long i = 1; i < n; i++)
        if (f(arg) != r) { fprintf(stderr, "result changed\n"); exit(4); }
    return r;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100;
    static const unsigned char a[] = {0xb8, 107, 0, 0, 0, 0x0f, 0x05, 0xc3};
    static const unsigned char b[] = {0x48, 0xc7, 0xc0, 102, 0, 0, 0, 0x0f, 0x05, 0xc3};
    static const unsigned char c[] = {0x48, 0x89, 0xf8, 0x0f, 0x05, 0xc3};
    static const unsigned char d[] = {0xb8, 108, 0, 0, 0, 0x0f, 0x05, 0xc3};
    fn fa = jit(a, sizeof a), fb = jit(b, sizeof b), fc = jit(c, sizeof c), fd = jit(d, sizeof d);
    printf("A geteuid %ld x%ld\n", loop(fa, 0, n), n);
    printf("B getuid %ld x%ld\n", loop(fb, 0, n), n);
    printf("C getgid %ld x%ld\n", loop(fc, 104, n), n);
    if (pipe(fds) != 0) { perror("pipe"); return 2; }
    pthread_t t;
    if (pthread_create(&t, 0, waiter, 0) != 0) { fprintf(stderr, "pthread_create\n"); return 2; }
    printf("D getegid %ld x%ld\n", loop(fd, 0, n), n);
    if (write(fds[1], "x", 1) != 1) return 2;
    pthread_join(t, 0);
    return 0;
}
