/* Re-executes itself through /proc/self/exe (what busybox's applets and
 * Go's os/exec tests do): the child must be this program again. Prints
 * what each generation sees. Usage: selfexec [generation] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int gen = argc > 1 ? atoi(argv[1]) : 0;
    printf("generation %d argv0 %s\n", gen, strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0]);
    fflush(stdout);
    if (gen < 2) {
        char next[16];
        snprintf(next, sizeof next, "%d", gen + 1);
        execl("/proc/self/exe", argv[0], next, (char *)0);
        perror("execl /proc/self/exe");
        return 1;
    }
    return 0;
}
