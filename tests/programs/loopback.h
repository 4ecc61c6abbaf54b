/* Loopback TCP helpers shared by the C test programs (sockets.c, spawn.c).
 * Included after the system headers; everything is static, so each program
 * gets its own copy and no link step is involved. Output goes to stdout
 * because the tests compare transcripts, and a fatal error prints
 * "FATAL <what>: <strerror>" and exits 2, which the tests report as such. */
#ifndef SHUNT_TEST_LOOPBACK_H
#define SHUNT_TEST_LOOPBACK_H

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    printf("FATAL %s: %s\n", what, strerror(errno));
    exit(2);
}

/* A listening socket on 127.0.0.1 at a port the kernel picks; *addr is
 * filled with the bound address. */
static int listener(struct sockaddr_in *addr) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) die("socket");
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)addr, sizeof *addr) < 0) die("bind");
    if (listen(l, 128) < 0) die("listen");
    socklen_t len = sizeof *addr;
    if (getsockname(l, (struct sockaddr *)addr, &len) < 0) die("getsockname");
    return l;
}

/* A connected pair: *c connects, *a is accepted; the listener is closed. */
static void pair(int *c, int *a) {
    struct sockaddr_in addr;
    int l = listener(&addr);
    *c = socket(AF_INET, SOCK_STREAM, 0);
    if (*c < 0) die("socket");
    if (connect(*c, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    *a = accept(l, NULL, NULL);
    if (*a < 0) die("accept");
    close(l);
}

#endif
