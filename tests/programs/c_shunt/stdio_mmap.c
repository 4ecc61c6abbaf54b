/* stdio-heavy output and file I/O with mmap. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/stdio_mmap.%d.dat", dir, (int)getpid());
    for (int i = 0; i < 20000; i++) printf("line %d: %08x %s\n", i, i * 2654435761u, i % 7 ? "x" : "seven");
    fprintf(stderr, "to stderr %d\n", 42);
    FILE *f = fopen(path, "w+");
    if (!f) { perror("fopen"); return 1; }
    for (int i = 0; i < 100000; i++) fprintf(f, "%d,", i);
    fflush(f);
    long size = ftell(f);
    fclose(f);
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    unsigned char *p = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    unsigned long sum = 0;
    for (off_t i = 0; i < st.st_size; i++) sum = sum * 31 + p[i];
    munmap(p, st.st_size);
    close(fd);
    /* anonymous memory, malloc'd big buffers (mmap inside malloc) */
    char *big = malloc(8 << 20);
    memset(big, 'a', 8 << 20);
    unsigned long s2 = 0;
    for (int i = 0; i < (8 << 20); i += 4096) s2 += big[i];
    free(big);
    unlink(path);
    printf("size %ld = %ld, checksum %lx, big %lu, gone %d\n", size, (long)st.st_size, sum, s2, access(path, F_OK) != 0);
    return 5;
}
