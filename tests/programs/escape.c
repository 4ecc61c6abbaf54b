/* A hostile program: makes a call its policy forbids while going around the
 * shunt runtime, each mode by another way, and prints what came back.
 * Natively (no runtime mapped) every mode makes the call with its own
 * `syscall` instruction, so the native output is the unrestricted answer.
 *
 *   escape gadget  PATH          mkdirat through a `syscall; ret` found in
 *                                the runtime's exempt text
 *   escape sud-off PATH          disarms Syscall User Dispatch through that
 *                                gadget, then mkdirat from its own text
 *   escape selector OFF PATH     sets its SUD selector byte (GS base + OFF)
 *                                to ALLOW, then mkdirat from its own text
 *   escape actions OFF PATH      writes "to the kernel" (0) over the runtime's
 *                                action table entries of mkdir and mkdirat
 *                                (the table is at OFF in libshunt.so), then
 *                                mkdir() through glibc
 *   escape io_uring              io_uring_setup through the gadget
 *   escape kill                  unshare(0) through the gadget
 *   escape setgs                 arch_prctl(ARCH_SET_GS) through glibc, then
 *                                getppid() through glibc
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned char *gadget;     /* `syscall; ret` in the runtime, or NULL */
static unsigned long shunt_base;  /* load address of libshunt.so, or 0 */

static int find_runtime(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    if (!strstr(info->dlpi_name, "libshunt.so"))
        return 0;
    shunt_base = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        unsigned char *p = (unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        for (size_t j = 0; j + 2 < ph->p_memsz; j++)
            if (p[j] == 0x0f && p[j + 1] == 0x05 && p[j + 2] == 0xc3) {
                gadget = p + j;
                return 1;
            }
    }
    return 1;
}

/* A system call from this program's own text. */
static long own_syscall(long nr, long a, long b, long c) {
    long ret;
    register long r10 __asm__("r10") = 0, r8 __asm__("r8") = 0, r9 __asm__("r9") = 0;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* A system call through the runtime's gadget (or our own without one). The
 * call pushes below rsp: step over the red zone first. */
static long via_gadget(long nr, long a, long b, long c) {
    if (!gadget)
        return own_syscall(nr, a, b, c);
    long ret;
    register long r10 __asm__("r10") = 0, r8 __asm__("r8") = 0, r9 __asm__("r9") = 0;
    __asm__ volatile("sub $128, %%rsp\n\tcall *%[g]\n\tadd $128, %%rsp"
                     : "=a"(ret)
                     : [g] "r"(gadget), "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerrorname_np((int)-r));
    else
        printf("%s: ok\n", what);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    dl_iterate_phdr(find_runtime, NULL);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "gadget") && argc > 2) {
        report("mkdirat", via_gadget(SYS_mkdirat, AT_FDCWD, (long)argv[2], 0700));
    } else if (!strcmp(mode, "sud-off") && argc > 2) {
        /* PR_SET_SYSCALL_USER_DISPATCH (59), PR_SYS_DISPATCH_OFF (0) */
        report("disarm", via_gadget(SYS_prctl, 59, 0, 0));
        report("mkdirat", own_syscall(SYS_mkdirat, AT_FDCWD, (long)argv[2], 0700));
    } else if (!strcmp(mode, "selector") && argc > 3) {
        if (shunt_base) {
            unsigned long gs;
            __asm__ volatile("rdgsbase %0" : "=r"(gs));
            *(volatile unsigned char *)(gs + strtoul(argv[2], NULL, 0)) = 0; /* SYSCALL_DISPATCH_FILTER_ALLOW */
        }
        report("mkdirat", own_syscall(SYS_mkdirat, AT_FDCWD, (long)argv[3], 0700));
    } else if (!strcmp(mode, "actions") && argc > 3) {
        if (shunt_base) {
            unsigned char *table = (unsigned char *)(shunt_base + strtoul(argv[2], NULL, 0));
            table[SYS_mkdir] = 0; /* Action::Kernel */
            table[SYS_mkdirat] = 0;
        }
        report("mkdir", mkdir(argv[3], 0700) < 0 ? -errno : 0);
    } else if (!strcmp(mode, "io_uring")) {
        unsigned char params[120] = {0}; /* struct io_uring_params */
        long fd = via_gadget(SYS_io_uring_setup, 4, (long)params, 0);
        report("io_uring_setup", fd);
    } else if (!strcmp(mode, "kill")) {
        printf("calling unshare\n");
        report("unshare", via_gadget(SYS_unshare, 0, 0, 0));
    } else if (!strcmp(mode, "setgs")) {
        static char elsewhere[4096];
        report("arch_prctl", syscall(SYS_arch_prctl, 0x1001 /* ARCH_SET_GS */, (long)elsewhere) < 0 ? -errno : 0);
        report("getppid", getppid() > 0 ? 0 : -errno);
    } else {
        fprintf(stderr, "usage: escape gadget|sud-off|selector|actions|io_uring|kill ...\n");
        return 2;
    }
    return 0;
}
