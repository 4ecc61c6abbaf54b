/* Loopback TCP semantics, one scenario per argument, printed as a
 * transcript: return values, errno names and readiness bits, never fd
 * numbers, ports or timings. The kernel is the oracle: tests run each
 * scenario natively and under `shunt run --transport shm` and compare.
 *
 * Every wait for an asynchronous event (a FIN, a RST, data) is a poll on
 * that event with a generous timeout, never a sleep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "loopback.h"

static const char *errname(int e) {
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EINPROGRESS: return "EINPROGRESS";
    case ENOTCONN: return "ENOTCONN";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EISCONN: return "EISCONN";
    case EALREADY: return "EALREADY";
    case EINTR: return "EINTR";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case ESPIPE: return "ESPIPE";
    default: return "E?";
    }
}

/* Prints `what: value` or `what: ERRNO`. */
static long show(const char *what, long r) {
    if (r < 0) printf("%s: %s\n", what, errname(errno));
    else printf("%s: %ld\n", what, r);
    fflush(stdout);
    return r;
}

static const char *evname(int ev) {
    static char buf[128];
    buf[0] = 0;
    const struct { int bit; const char *n; } bits[] = {
        {POLLIN, "IN"}, {POLLPRI, "PRI"}, {POLLOUT, "OUT"}, {POLLRDHUP, "RDHUP"},
        {POLLHUP, "HUP"}, {POLLERR, "ERR"}, {POLLNVAL, "NVAL"}};
    for (unsigned i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (ev & bits[i].bit) {
            if (buf[0]) strcat(buf, "|");
            strcat(buf, bits[i].n);
        }
    if (!buf[0]) strcpy(buf, "-");
    return buf;
}

static void show_poll(const char *what, int fd) {
    struct pollfd p = {fd, POLLIN | POLLOUT | POLLRDHUP | POLLPRI, 0};
    int r = poll(&p, 1, 0);
    printf("%s: %d %s\n", what, r, evname(p.revents));
    fflush(stdout);
}

/* Waits (at most 10 s) until `fd` shows one of `ev`. */
static void await(int fd, short ev) {
    struct pollfd p = {fd, ev, 0};
    if (poll(&p, 1, 10000) != 1) {
        printf("FATAL await %s: timed out\n", evname(ev));
        exit(2);
    }
}

static void show_read(const char *what, int fd, size_t n, int flags) {
    char buf[256];
    if (n > sizeof buf) n = sizeof buf;
    ssize_t r = recv(fd, buf, n, flags);
    if (r < 0) printf("%s: %s\n", what, errname(errno));
    else if (r == 0) printf("%s: EOF\n", what);
    else printf("%s: \"%.*s\"\n", what, (int)r, buf);
    fflush(stdout);
}

static long wr(int fd, const char *s) {
    return send(fd, s, strlen(s), MSG_NOSIGNAL);
}

static void sc_connect_blocking(void) {
    struct sockaddr_in addr;
    int l = listener(&addr);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    show("connect", connect(c, (struct sockaddr *)&addr, sizeof addr));
    show("connect again", connect(c, (struct sockaddr *)&addr, sizeof addr));
    /* The program writes before the server accepts. */
    show("write before accept", wr(c, "early"));
    int a = accept(l, NULL, NULL);
    show("accepted", a >= 0);
    show_read("server reads", a, 64, 0);
    show("server writes", wr(a, "late"));
    show_read("client reads", c, 64, 0);
}

static void sc_connect_nonblocking(void) {
    struct sockaddr_in addr;
    int l = listener(&addr);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(c, (struct sockaddr *)&addr, sizeof addr);
    printf("connect: %s\n", r == 0 ? "0 (at once)" : errno == EINPROGRESS ? "EINPROGRESS" : errname(errno));
    await(c, POLLOUT);
    int err = -1;
    socklen_t len = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
    printf("SO_ERROR: %d\n", err);
    int a = accept(l, NULL, NULL);
    show("write", wr(c, "x"));
    await(a, POLLIN);
    show_read("read", a, 10, 0);
    /* A closed port. */
    close(l);
    int d = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    r = connect(d, (struct sockaddr *)&addr, sizeof addr);
    printf("connect refused: %s\n", r == 0 ? "0" : (errno == EINPROGRESS || errno == ECONNREFUSED) ? "EINPROGRESS or ECONNREFUSED" : errname(errno));
    if (r < 0 && errno == EINPROGRESS) await(d, POLLOUT);
    err = -1;
    getsockopt(d, SOL_SOCKET, SO_ERROR, &err, &len);
    printf("SO_ERROR: %s\n", err == ECONNREFUSED || r < 0 ? "ECONNREFUSED (here or at connect)" : "?");
}

static void sc_accept4_flags(void) {
    struct sockaddr_in addr;
    int l = listener(&addr);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&addr, sizeof addr);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int a = accept4(l, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct sockaddr_in cname;
    socklen_t clen = sizeof cname;
    getsockname(c, (struct sockaddr *)&cname, &clen);
    printf("peer address is the client's: %d\n", plen == sizeof peer && peer.sin_port == cname.sin_port);
    printf("O_NONBLOCK: %d\n", !!(fcntl(a, F_GETFL) & O_NONBLOCK));
    printf("FD_CLOEXEC: %d\n", !!(fcntl(a, F_GETFD) & FD_CLOEXEC));
    show_read("read (nonblocking, empty)", a, 10, 0);
    show("write", wr(c, "ab"));
    await(a, POLLIN);
    show_read("read", a, 10, 0);
    int b = socket(AF_INET, SOCK_STREAM, 0);
    connect(b, (struct sockaddr *)&addr, sizeof addr);
    int a2 = accept4(l, NULL, NULL, 0);
    printf("plain accept4: O_NONBLOCK %d FD_CLOEXEC %d\n", !!(fcntl(a2, F_GETFL) & O_NONBLOCK), !!(fcntl(a2, F_GETFD) & FD_CLOEXEC));
}

static void sc_read_write_calls(void) {
    int c, a;
    pair(&c, &a);
    char buf[64];
    show("write", write(c, "w1", 2));
    struct iovec iv[3] = {{"wv", 2}, {"", 0}, {"2!", 2}};
    show("writev", writev(c, iv, 3));
    show("send", send(c, "s3", 2, 0));
    show("sendto", sendto(c, "t4", 2, 0, NULL, 0));
    struct msghdr m = {0};
    struct iovec one = {"m5", 2};
    m.msg_iov = &one;
    m.msg_iovlen = 1;
    show("sendmsg", sendmsg(c, &m, 0));
    /* 12 bytes are on their way; read them back with every call (each
     * for an exact count, as a stream may split them anywhere). */
    char got[32] = {0};
    size_t n = 0;
    while (n < 2) {
        ssize_t r = read(a, got + n, 2 - n);
        if (r <= 0) die("read");
        n += r;
    }
    char x[2], y[2];
    size_t v = 0;
    while (v < 4) {
        struct iovec rv[2] = {{x + (v < 2 ? v : 2), v < 2 ? 2 - v : 0}, {y + (v > 2 ? v - 2 : 0), v > 2 ? 4 - v : 2}};
        ssize_t k = readv(a, rv, 2);
        if (k <= 0) die("readv");
        v += k;
    }
    memcpy(got + n, x, 2);
    memcpy(got + n + 2, y, 2);
    n += 4;
    ssize_t r = recvfrom(a, got + n, 2, MSG_WAITALL, NULL, NULL);
    if (r != 2) die("recvfrom");
    n += r;
    struct msghdr mr = {0};
    struct iovec riov = {got + n, 2};
    mr.msg_iov = &riov;
    mr.msg_iovlen = 1;
    r = recvmsg(a, &mr, MSG_WAITALL);
    if (r != 2) die("recvmsg");
    n += r;
    r = recv(a, got + n, 2, MSG_WAITALL);
    if (r != 2) die("recv");
    n += r;
    printf("stream: %.*s\n", (int)n, got);
    show("zero-length send", send(c, buf, 0, 0));
    show("zero-length recv", recv(a, buf, 0, MSG_DONTWAIT));
}

static void sc_peek_dontwait(void) {
    int c, a;
    pair(&c, &a);
    show_read("dontwait on empty", a, 10, MSG_DONTWAIT);
    show("write", wr(c, "hello"));
    await(a, POLLIN);
    show_read("peek", a, 3, MSG_PEEK);
    show_read("peek again", a, 10, MSG_PEEK);
    show_read("read", a, 2, 0);
    show_read("peek rest", a, 10, MSG_PEEK | MSG_DONTWAIT);
    show_read("read rest", a, 10, MSG_DONTWAIT);
    show_read("dontwait empty again", a, 10, MSG_DONTWAIT);
}

static void sc_partial_writes(void) {
    int c, a;
    pair(&c, &a);
    fcntl(c, F_SETFL, O_NONBLOCK);
    /* Not a divisor of any ring or buffer size: the write that fills it is
     * partial. */
    static char big[50000];
    memset(big, 'z', sizeof big);
    long total = 0;
    int partial = 0;
    for (;;) {
        ssize_t r = send(c, big, sizeof big, MSG_NOSIGNAL);
        if (r < 0) {
            printf("filled: %s\n", errname(errno));
            break;
        }
        if ((size_t)r < sizeof big) partial = 1;
        total += r;
        if (total > (1L << 30)) die("never full");
    }
    printf("a partial write came before EAGAIN: %d\n", partial);
    show_poll("writer poll when full", c);
    /* Drain everything: the writer can write again. */
    static char sink[1 << 16];
    long got = 0;
    while (got < total) {
        ssize_t r = recv(a, sink, sizeof sink, 0);
        if (r <= 0) die("drain");
        got += r;
    }
    printf("drained all: %d\n", got == total);
    await(c, POLLOUT);
    show("write after drain", send(c, "ok", 2, MSG_NOSIGNAL));
    show_read("read it", a, 10, 0);
}

static void sc_shutdown(void) {
    int c, a;
    pair(&c, &a);
    show("write", wr(c, "last words"));
    show("shutdown(SHUT_WR)", shutdown(c, SHUT_WR));
    await(a, POLLRDHUP);
    show_poll("peer poll", a);
    show_poll("own poll", c);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u32 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
    struct epoll_event out[4];
    int n = epoll_wait(ep, out, 4, 1000);
    printf("epoll: %d events %s data %u\n", n, n > 0 ? evname(out[0].events) : "-", n > 0 ? out[0].data.u32 : 0);
    show_read("peer reads", a, 64, 0);
    show_read("peer reads EOF", a, 64, 0);
    show_read("again EOF", a, 64, 0);
    show("write after own SHUT_WR", wr(c, "x"));
    show("peer writes back", wr(a, "reply"));
    await(c, POLLIN);
    show_read("half-closed side reads", c, 64, 0);
    show("peer shutdown(SHUT_WR)", shutdown(a, SHUT_WR));
    await(c, POLLRDHUP);
    show_poll("both shut: c", c);
    show_poll("both shut: a", a);
    show("shutdown(bad)", shutdown(c, 42));
}

static void sc_close_and_reset(void) {
    int c, a;
    pair(&c, &a);
    show("a write", wr(a, "bye"));
    await(c, POLLIN);
    close(a);
    await(c, POLLRDHUP);
    show_poll("after clean close", c);
    show_read("read", c, 10, 0);
    show_read("read", c, 10, 0);
    show("write 1 (meets a closed socket)", wr(c, "x"));
    await(c, POLLERR | POLLHUP);
    show_poll("after the RST", c);
    show("write 2", wr(c, "x"));
    show_read("read", c, 10, 0);
    /* Closing with unread data resets the connection. */
    pair(&c, &a);
    show("c write", wr(c, "unread"));
    show("a write", wr(a, "pending"));
    await(a, POLLIN);
    await(c, POLLIN);
    close(a);
    await(c, POLLHUP | POLLERR | POLLRDHUP);
    show_poll("after reset", c);
    int err;
    socklen_t len = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
    printf("SO_ERROR: %s\n", err ? errname(err) : "0");
    show_read("read pending", c, 10, 0);
    show_read("read after", c, 10, 0);
    show("write", wr(c, "x"));
    /* SIGPIPE without MSG_NOSIGNAL. */
    signal(SIGPIPE, SIG_IGN);
    show("write (SIGPIPE ignored)", write(c, "x", 1));
}

/* SO_LINGER {on, 0}: close aborts (a RST, not a FIN); the peer reads what
 * was sent, then ECONNRESET, then EOF. A linger with a timeout, or one
 * turned off again, is a normal close. The option is the socket's wherever
 * it was set: an accepted socket takes it from its listener. */
static void show_linger(const char *what, int fd) {
    struct linger lg = {0, 0};
    socklen_t len = sizeof lg;
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0) die("getsockopt SO_LINGER");
    printf("%s: {%d, %d} len %u\n", what, lg.l_onoff, lg.l_linger, (unsigned)len);
    fflush(stdout);
}

static long set_linger(int fd, int on, int secs) {
    struct linger lg = {on, secs};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void sc_linger_reset(void) {
    int c, a;
    pair(&c, &a);
    show_linger("default", a);
    show("setsockopt {1, 0}", set_linger(a, 1, 0));
    show_linger("now", a);
    show("a write", wr(a, "last"));
    await(c, POLLIN);
    close(a);
    await(c, POLLHUP | POLLERR);
    show_poll("after the abort", c);
    show_read("read", c, 10, 0);
    show_read("read", c, 10, 0);
    show_read("read", c, 10, 0);
    show("write", wr(c, "x"));
    close(c);
    /* The connector aborts; the acceptor, having read nothing, asks
     * SO_ERROR first (one-shot), then reads. */
    pair(&c, &a);
    show("c write", wr(c, "gone"));
    await(a, POLLIN);
    show("setsockopt {1, 0}", set_linger(c, 1, 0));
    close(c);
    await(a, POLLHUP | POLLERR);
    int err;
    socklen_t len = sizeof err;
    getsockopt(a, SOL_SOCKET, SO_ERROR, &err, &len);
    printf("SO_ERROR: %s\n", err ? errname(err) : "0");
    show_read("read", a, 10, 0);
    show_read("read", a, 10, 0);
    close(a);
    /* A write after the abort is the first to hear of it. */
    pair(&c, &a);
    set_linger(a, 1, 0);
    close(a);
    await(c, POLLHUP | POLLERR);
    show("write", wr(c, "x"));
    show("write", wr(c, "x"));
    show_read("read", c, 10, 0);
    close(c);
    /* Inherited from the listener. */
    struct sockaddr_in addr;
    int l = listener(&addr);
    show("listener setsockopt {1, 0}", set_linger(l, 1, 0));
    c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    a = accept(l, NULL, NULL);
    if (a < 0) die("accept");
    close(l);
    show_linger("accepted", a);
    close(a);
    await(c, POLLHUP | POLLERR);
    show_read("read", c, 10, 0);
    show_read("read", c, 10, 0);
    close(c);
    /* A timeout, or off again: a clean close. */
    for (int i = 0; i < 2; i++) {
        pair(&c, &a);
        if (i == 0) show("setsockopt {1, 5}", set_linger(a, 1, 5));
        else {
            set_linger(a, 1, 0);
            show("setsockopt {0, 0}", set_linger(a, 0, 0));
        }
        show("a write", wr(a, "bye"));
        close(a);
        await(c, POLLRDHUP);
        show_poll("after the close", c);
        show_read("read", c, 10, 0);
        show_read("read", c, 10, 0);
        close(c);
    }
}

/* Fills `fd` (made non-blocking) until EAGAIN; returns the bytes written. */
static long fill(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static char big[50000];
    memset(big, 'z', sizeof big);
    long total = 0;
    for (;;) {
        ssize_t r = write(fd, big, sizeof big);
        if (r < 0) {
            if (errno != EAGAIN) die("fill");
            return total;
        }
        total += r;
        if (total > (1L << 30)) die("never full");
    }
}

/* Reads exactly `n` bytes from `fd` (blocking), discarding them. */
static void drain_n(int fd, long n) {
    static char sink[1 << 16];
    while (n > 0) {
        ssize_t r = read(fd, sink, n < (long)sizeof sink ? n : (long)sizeof sink);
        if (r <= 0) die("drain");
        n -= r;
    }
}

/* Reads exactly `n` (<= 255) bytes from `fd` and prints them. */
static void show_exactly(const char *what, int fd, int n) {
    char buf[256];
    int got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) die("read exactly");
        got += r;
    }
    printf("%s: \"%.*s\"\n", what, got, buf);
    fflush(stdout);
}

/* splice between a connection and a pipe, both ways: what moves, partial
 * counts, EAGAIN on either side, the end of the stream and of the pipe,
 * and the shapes the kernel refuses. */
static void sc_splice(void) {
    int c, a, p[2];
    pair(&c, &a);
    if (pipe(p) < 0) die("pipe");
    loff_t off = 0;
    show("no pipe", splice(a, NULL, c, NULL, 10, 0));
    show("offset on the pipe", splice(p[0], &off, a, NULL, 10, 0));
    show("offset on the socket", splice(a, &off, p[1], NULL, 10, 0));
    show("into the read end", splice(a, NULL, p[0], NULL, 10, 0));
    show("length 0", splice(a, NULL, p[1], NULL, 0, 0));
    show("c write", wr(c, "hello splice"));
    await(a, POLLIN);
    show("socket->pipe 5", splice(a, NULL, p[1], NULL, 5, 0));
    show("socket->pipe 100", splice(a, NULL, p[1], NULL, 100, SPLICE_F_MOVE));
    show_exactly("pipe holds", p[0], 12);
    fcntl(a, F_SETFL, O_NONBLOCK);
    show("socket empty (non-blocking)", splice(a, NULL, p[1], NULL, 100, SPLICE_F_NONBLOCK));
    /* A blocking splice waits for the bytes (a child sends them). */
    fcntl(a, F_SETFL, 0);
    pid_t pid = fork();
    if (pid == 0) {
        wr(c, "late");
        _exit(0);
    }
    show("socket->pipe, waiting", splice(a, NULL, p[1], NULL, 100, 0));
    waitpid(pid, NULL, 0);
    show_exactly("pipe holds", p[0], 4);
    /* A full pipe. */
    long inpipe = fill(p[1]);
    fcntl(p[1], F_SETFL, 0);
    show("c write", wr(c, "more"));
    await(a, POLLIN);
    show("into a full pipe (SPLICE_F_NONBLOCK)", splice(a, NULL, p[1], NULL, 100, SPLICE_F_NONBLOCK));
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    show("into a full pipe (O_NONBLOCK)", splice(a, NULL, p[1], NULL, 100, 0));
    fcntl(p[1], F_SETFL, 0);
    drain_n(p[0], inpipe);
    show("socket->pipe after draining", splice(a, NULL, p[1], NULL, 100, 0));
    show_exactly("pipe holds", p[0], 4);
    /* pipe -> socket. */
    show("pipe write", write(p[1], "via pipe", 8));
    show("pipe->socket 3", splice(p[0], NULL, a, NULL, 3, 0));
    show("pipe->socket 100", splice(p[0], NULL, a, NULL, 100, SPLICE_F_MORE));
    show_exactly("c reads", c, 8);
    show("empty pipe (SPLICE_F_NONBLOCK)", splice(p[0], NULL, a, NULL, 100, SPLICE_F_NONBLOCK));
    pid = fork();
    if (pid == 0) {
        write(p[1], "later", 5);
        _exit(0);
    }
    show("pipe->socket, waiting", splice(p[0], NULL, a, NULL, 100, 0));
    waitpid(pid, NULL, 0);
    show_exactly("c reads", c, 5);
    /* A full socket. */
    long insock = fill(a);
    show("pipe write", write(p[1], "x", 1));
    show("into a full socket (non-blocking)", splice(p[0], NULL, a, NULL, 100, 0));
    drain_n(c, insock);
    await(a, POLLOUT);
    show("pipe->socket after draining", splice(p[0], NULL, a, NULL, 100, 0));
    show_exactly("c reads", c, 1);
    /* The end of the stream, a reset, a pipe without writers or readers. */
    fcntl(a, F_SETFL, 0);
    show("c write", wr(c, "end"));
    shutdown(c, SHUT_WR);
    await(a, POLLRDHUP);
    show("socket->pipe before EOF", splice(a, NULL, p[1], NULL, 100, 0));
    show("socket->pipe at EOF", splice(a, NULL, p[1], NULL, 100, 0));
    show_exactly("pipe holds", p[0], 3);
    close(p[1]);
    show("pipe without writers", splice(p[0], NULL, a, NULL, 100, 0));
    close(p[0]);
    if (pipe(p) < 0) die("pipe");
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    close(c);
    close(a);
    pair(&c, &a);
    show("c write", wr(c, "lost"));
    await(a, POLLIN);
    show("pipe without readers", splice(a, NULL, p[1], NULL, 100, 0));
    close(p[1]);
    if (pipe(p) < 0) die("pipe");
    set_linger(c, 1, 0);
    close(c);
    await(a, POLLERR);
    show("socket->pipe after a reset", splice(a, NULL, p[1], NULL, 100, 0));
    show("socket->pipe after a reset", splice(a, NULL, p[1], NULL, 100, 0));
    show("socket->pipe after a reset", splice(a, NULL, p[1], NULL, 100, 0));
    show_exactly("pipe holds", p[0], 4);
    close(p[0]);
    close(p[1]);
    /* A pipe the kernel's own splice used (Linux then refuses RWF_NOWAIT
     * on it, as for Go's pooled pipes), blocking and non-blocking. */
    int u[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, u) < 0) die("socketpair");
    pair(&c, &a);
    for (int nb = 0; nb < 2; nb++) {
        if (pipe2(p, nb ? O_NONBLOCK : 0) < 0) die("pipe");
        show("pipe write", write(p[1], "unix", 4));
        show("pipe->unix socket", splice(p[0], NULL, u[0], NULL, 100, 0));
        show_exactly("unix reads", u[1], 4);
        show("c write", wr(c, "used pipe"));
        await(a, POLLIN);
        show("socket->used pipe", splice(a, NULL, p[1], NULL, 100, 0));
        show("used pipe->socket", splice(p[0], NULL, a, NULL, 100, 0));
        show_exactly("c reads", c, 9);
        show("empty used pipe (SPLICE_F_NONBLOCK)", splice(p[0], NULL, a, NULL, 100, SPLICE_F_NONBLOCK));
        close(p[0]);
        close(p[1]);
    }
    close(u[0]);
    close(u[1]);
    close(c);
    close(a);
    signal(SIGPIPE, SIG_DFL);
}

/* sendfile from a file into a connection: with and without an offset,
 * to the end of the file, into a full socket, after the peer's close. */
static void sc_sendfile(void) {
    int c, a;
    pair(&c, &a);
    char path[] = "/tmp/shunt-sendfile-XXXXXX";
    int f = mkstemp(path);
    if (f < 0) die("mkstemp");
    unlink(path);
    if (write(f, "0123456789abcdef", 16) != 16) die("write file");
    off_t off = 4;
    show("sendfile 6 at 4", sendfile(a, f, &off, 6));
    printf("offset %ld, file position %ld\n", (long)off, (long)lseek(f, 0, SEEK_CUR));
    lseek(f, 10, SEEK_SET);
    show("sendfile from the position", sendfile(a, f, NULL, 100));
    printf("file position %ld\n", (long)lseek(f, 0, SEEK_CUR));
    show("sendfile at the end", sendfile(a, f, NULL, 100));
    show_exactly("c reads", c, 12);
    show("sendfile 0", sendfile(a, f, NULL, 0));
    int w = open("/dev/null", O_WRONLY);
    show("from a write-only fd", sendfile(a, w, NULL, 10));
    close(w);
    int p[2];
    if (pipe(p) < 0) die("pipe");
    off = -1;
    show("negative offset", sendfile(a, f, &off, 10));
    long insock = fill(a);
    off = 0;
    show("into a full socket", sendfile(a, f, &off, 16));
    drain_n(c, insock);
    await(a, POLLOUT);
    show("after draining", sendfile(a, f, &off, 16));
    show_exactly("c reads", c, 16);
    /* A blocking sendfile of a file larger than the socket takes: all of
     * it, while the reader drains. */
    fcntl(a, F_SETFL, 0);
    static char blob[1 << 20];
    for (unsigned i = 0; i < sizeof blob; i++) blob[i] = (char)(i * 7 + i / 4096);
    if (pwrite(f, blob, sizeof blob, 0) != (ssize_t)sizeof blob) die("pwrite");
    pid_t pid = fork();
    if (pid == 0) {
        static char got[1 << 20];
        long n = 0;
        while (n < (long)sizeof got) {
            ssize_t r = read(c, got + n, sizeof got - n);
            if (r <= 0) _exit(3);
            n += r;
        }
        _exit(memcmp(got, blob, sizeof got) == 0 ? 0 : 4);
    }
    off = 0;
    show("sendfile 1 MiB (blocking)", sendfile(a, f, &off, sizeof blob));
    int st;
    waitpid(pid, &st, 0);
    printf("reader: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    close(c);
    await(a, POLLRDHUP);
    signal(SIGPIPE, SIG_IGN);
    off = 0;
    show("sendfile after the peer's close", sendfile(a, f, &off, 16));
    await(a, POLLERR | POLLHUP);
    show("sendfile after the reset", sendfile(a, f, &off, 16));
    signal(SIGPIPE, SIG_DFL);
    close(p[0]);
    close(p[1]);
    close(f);
}

static void sc_peer_dies(void) {
    int c, a;
    pair(&c, &a);
    pid_t pid = fork();
    if (pid == 0) {
        close(a);
        for (;;) {
            if (send(c, "data", 4, MSG_NOSIGNAL) < 0) _exit(1);
        }
    }
    close(c);
    char buf[4096];
    long got = 0;
    while (got < (1 << 20)) {
        ssize_t r = read(a, buf, sizeof buf);
        if (r <= 0) die("read");
        got += r;
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    printf("child killed: %d\n", WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ssize_t r;
    while ((r = read(a, buf, sizeof buf)) > 0) {}
    printf("reader ends with: %s\n", r == 0 ? "EOF" : errname(errno));
    /* The other way: the reader dies, the writer blocks, then fails. */
    pair(&c, &a);
    pid = fork();
    if (pid == 0) {
        close(c);
        read(a, buf, 10);
        pause();
        _exit(0);
    }
    close(a);
    signal(SIGPIPE, SIG_IGN);
    /* Not a divisor of any ring or buffer size: the write that fills it is
     * partial. */
    static char big[50000];
    int killed = 0;
    for (long total = 0;; total += r) {
        r = send(c, big, sizeof big, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0 && errno == EAGAIN && !killed) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            killed = 1;
            r = 0;
            continue;
        }
        if (r < 0 && errno == EAGAIN) {
            await(c, POLLOUT);
            r = 0;
            continue;
        }
        if (r < 0) break;
    }
    printf("writer ends with: %s\n", errno == EPIPE || errno == ECONNRESET ? "EPIPE or ECONNRESET" : errname(errno));
    show("then", send(c, "x", 1, MSG_NOSIGNAL));
}

static void sc_dup(void) {
    int c, a;
    pair(&c, &a);
    int d1 = dup(c);
    int d2 = 100;
    show("dup2", dup2(c, d2) == d2);
    int d3 = 101;
    show("dup3(O_CLOEXEC)", dup3(c, d3, O_CLOEXEC) == d3);
    printf("dup3 cloexec: %d, dup2 cloexec: %d\n", !!(fcntl(d3, F_GETFD) & FD_CLOEXEC), !!(fcntl(d2, F_GETFD) & FD_CLOEXEC));
    int d4 = fcntl(c, F_DUPFD, 200);
    int d5 = fcntl(c, F_DUPFD_CLOEXEC, 0);
    printf("F_DUPFD >= 200: %d, F_DUPFD_CLOEXEC cloexec: %d\n", d4 >= 200, !!(fcntl(d5, F_GETFD) & FD_CLOEXEC));
    show("dup3 onto itself", dup3(c, c, 0));
    show("dup2 onto itself", dup2(c, c) == c);
    /* Any copy writes to the same stream; O_NONBLOCK is shared. */
    close(c);
    show("write via dup", wr(d1, "1"));
    show("write via dup2", wr(d2, "2"));
    show("write via dup3", wr(d3, "3"));
    show("write via F_DUPFD", wr(d4, "4"));
    show("write via F_DUPFD_CLOEXEC", wr(d5, "5"));
    char got[8];
    long n = 0;
    while (n < 5) {
        ssize_t r = read(a, got + n, sizeof got - n);
        if (r <= 0) die("read");
        n += r;
    }
    printf("peer got: %.*s\n", (int)n, got);
    fcntl(d1, F_SETFL, O_NONBLOCK);
    printf("O_NONBLOCK shared with dup2: %d\n", !!(fcntl(d2, F_GETFL) & O_NONBLOCK));
    show_read("nonblocking read via another copy", d4, 10, 0);
    /* dup2 over a marked fd replaces it. */
    int p[2];
    pipe(p);
    show("dup2 a pipe over a copy", dup2(p[0], d2) == d2);
    write(p[1], "pipe", 4);
    char pb[8];
    printf("read via that number: %zd\n", read(d2, pb, sizeof pb));
    /* Close every copy: the peer sees EOF. */
    close(d1);
    close(d3);
    close(d4);
    show_read("peer before the last close", a, 10, MSG_DONTWAIT);
    close(d5);
    await(a, POLLRDHUP);
    show_read("peer after the last close", a, 10, 0);
    show("close twice", close(d5));
}

static void sc_nonblock_fionread(void) {
    int c, a;
    pair(&c, &a);
    show("fcntl(F_SETFL, O_NONBLOCK)", fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK));
    show_read("read", a, 10, 0);
    int off = 0;
    show("ioctl(FIONBIO, 0)", ioctl(a, FIONBIO, &off));
    printf("O_NONBLOCK now: %d\n", !!(fcntl(a, F_GETFL) & O_NONBLOCK));
    int on = 1;
    ioctl(a, FIONBIO, &on);
    show_read("read", a, 10, 0);
    int n = -1;
    ioctl(a, FIONREAD, &n);
    printf("FIONREAD empty: %d\n", n);
    wr(c, "twelve bytes");
    await(a, POLLIN);
    ioctl(a, FIONREAD, &n);
    printf("FIONREAD: %d\n", n);
    show_read("read 5", a, 5, 0);
    ioctl(a, FIONREAD, &n);
    printf("FIONREAD: %d\n", n);
    ioctl(a, SIOCOUTQ, &n);
    printf("SIOCOUTQ of the reader: %d\n", n);
}

static void sc_names_and_options(void) {
    int c, a;
    pair(&c, &a);
    struct sockaddr_in cl, cp, al, ap;
    socklen_t len = sizeof cl;
    getsockname(c, (struct sockaddr *)&cl, &len);
    getpeername(c, (struct sockaddr *)&cp, &len);
    getsockname(a, (struct sockaddr *)&al, &len);
    getpeername(a, (struct sockaddr *)&ap, &len);
    printf("names cross-match: %d\n", cl.sin_port == ap.sin_port && cp.sin_port == al.sin_port &&
                                         cl.sin_addr.s_addr == ap.sin_addr.s_addr && ntohl(cl.sin_addr.s_addr) == INADDR_LOOPBACK);
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
    printf("TCP_NODELAY: %d\n", v);
    int one = 1;
    show("set TCP_NODELAY", setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
    printf("TCP_NODELAY: %d\n", v);
    int buf = 1 << 16;
    show("set SO_RCVBUF", setsockopt(a, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf));
    getsockopt(a, SOL_SOCKET, SO_RCVBUF, &v, &vl);
    printf("SO_RCVBUF doubled as Linux does: %d\n", v == 2 * buf);
    getsockopt(a, SOL_SOCKET, SO_TYPE, &v, &vl);
    printf("SO_TYPE stream: %d\n", v == SOCK_STREAM);
    struct timeval tv = {0, 30000};
    show("set SO_RCVTIMEO", setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    struct timeval got;
    socklen_t gl = sizeof got;
    getsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &got, &gl);
    printf("SO_RCVTIMEO: %ld us\n", got.tv_sec * 1000000 + got.tv_usec);
    show_read("blocking read times out", a, 10, 0);
    wr(c, "in time");
    show_read("blocking read", a, 10, 0);
    show_read("times out again", a, 10, 0);
    show("set SO_SNDTIMEO", setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
    /* Not a divisor of any ring or buffer size: the write that fills it is
     * partial. */
    static char big[50000];
    long total = 0;
    ssize_t r;
    while ((r = send(c, big, sizeof big, MSG_NOSIGNAL)) > 0) total += r;
    printf("a blocking send with SO_SNDTIMEO ends with: %s (after %s)\n", errname(errno), total > 0 ? "some bytes" : "none");
}

static void sc_poll_select(void) {
    int c, a;
    pair(&c, &a);
    int p[2];
    pipe(p);
    struct pollfd f[3] = {{a, POLLIN, 0}, {p[0], POLLIN, 0}, {c, POLLOUT, 0}};
    int pn = poll(f, 3, 0);
    printf("poll: %d [%s ", pn, evname(f[0].revents));
    printf("%s ", evname(f[1].revents));
    printf("%s]\n", evname(f[2].revents));
    wr(c, "x");
    write(p[1], "y", 1);
    f[0].revents = f[1].revents = f[2].revents = 0;
    f[2].events = 0;
    int n = poll(f, 3, 5000);
    while (n < 2) {
        /* The two writes may land one after the other. */
        n = poll(f, 3, 5000);
    }
    printf("poll: %d [%s ", n, evname(f[0].revents));
    printf("%s ", evname(f[1].revents));
    printf("%s]\n", evname(f[2].revents));
    struct pollfd neg = {-1, POLLIN, 0};
    printf("poll of a negative fd: %d\n", poll(&neg, 1, 0));
    fd_set rd, wrs;
    FD_ZERO(&rd);
    FD_ZERO(&wrs);
    FD_SET(a, &rd);
    FD_SET(p[0], &rd);
    FD_SET(c, &wrs);
    int maxfd = (a > p[0] ? a : p[0]) > c ? (a > p[0] ? a : p[0]) : c;
    struct timeval tv = {5, 0};
    int sn = select(maxfd + 1, &rd, &wrs, NULL, &tv);
    printf("select: %d a:%d pipe:%d c-writable:%d\n", sn, FD_ISSET(a, &rd), FD_ISSET(p[0], &rd), FD_ISSET(c, &wrs));
    char b[4];
    read(a, b, 1);
    read(p[0], b, 1);
    FD_ZERO(&rd);
    FD_SET(a, &rd);
    struct timeval zero = {0, 30000};
    printf("select times out: %d\n", select(a + 1, &rd, NULL, NULL, &zero));
    /* A blocking poll woken by a write from another process. */
    pid_t pid = fork();
    if (pid == 0) {
        struct pollfd w = {c, POLLOUT, 0};
        poll(&w, 1, 0);
        wr(c, "late");
        _exit(0);
    }
    struct pollfd one = {a, POLLIN, 0};
    int pr = poll(&one, 1, 10000);
    printf("blocking poll: %d %s\n", pr, evname(one.revents));
    waitpid(pid, NULL, 0);
    show_read("read", a, 10, 0);
}

static void sc_epoll(void) {
    int c, a;
    pair(&c, &a);
    fcntl(a, F_SETFL, O_NONBLOCK);
    int lt = epoll_create1(EPOLL_CLOEXEC), et = epoll_create1(0), os = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = 0x1111};
    show("LT add", epoll_ctl(lt, EPOLL_CTL_ADD, a, &ev));
    show("LT add again", epoll_ctl(lt, EPOLL_CTL_ADD, a, &ev));
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = 0x2222;
    show("ET add (the same fd in a second set)", epoll_ctl(et, EPOLL_CTL_ADD, a, &ev));
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = 0x3333;
    show("ONESHOT add (a third set)", epoll_ctl(os, EPOLL_CTL_ADD, a, &ev));
    struct epoll_event out[8];
    int n = epoll_wait(lt, out, 8, 0);
    printf("LT, writable: %d %s %llx\n", n, n ? evname(out[0].events) : "-", n ? (unsigned long long)out[0].data.u64 : 0);
    printf("ET, nothing: %d\n", epoll_wait(et, out, 8, 0));
    wr(c, "abc");
    n = epoll_wait(et, out, 8, 5000);
    printf("ET after data: %d %s %llx\n", n, n ? evname(out[0].events) : "-", n ? (unsigned long long)out[0].data.u64 : 0);
    printf("ET again, no new edge: %d\n", epoll_wait(et, out, 8, 0));
    n = epoll_wait(lt, out, 8, 0);
    printf("LT reports it: %d %s\n", n, n ? evname(out[0].events) : "-");
    n = epoll_wait(lt, out, 8, 0);
    printf("LT again: %d %s\n", n, n ? evname(out[0].events) : "-");
    n = epoll_wait(os, out, 8, 0);
    printf("ONESHOT: %d %llx\n", n, n ? (unsigned long long)out[0].data.u64 : 0);
    printf("ONESHOT disarmed: %d\n", epoll_wait(os, out, 8, 0));
    ev.events = EPOLLIN | EPOLLONESHOT;
    show("ONESHOT rearm", epoll_ctl(os, EPOLL_CTL_MOD, a, &ev));
    printf("ONESHOT rearmed: %d\n", epoll_wait(os, out, 8, 0));
    show_read("read part", a, 1, 0);
    printf("ET after a partial read, no new edge: %d\n", epoll_wait(et, out, 8, 0));
    wr(c, "d");
    n = epoll_wait(et, out, 8, 5000);
    printf("ET new edge: %d %s\n", n, n ? evname(out[0].events) : "-");
    show_read("read all", a, 10, 0);
    n = epoll_wait(lt, out, 8, 0);
    printf("LT drained: %d %s\n", n, n ? evname(out[0].events) : "-");
    /* Mixed with kernel fds: a pipe and an eventfd. */
    int p[2];
    pipe(p);
    int efd = eventfd(0, EFD_NONBLOCK);
    ev.events = EPOLLIN;
    ev.data.u64 = 0x4444;
    epoll_ctl(et, EPOLL_CTL_ADD, p[0], &ev);
    ev.data.u64 = 0x5555;
    epoll_ctl(et, EPOLL_CTL_ADD, efd, &ev);
    uint64_t one = 1;
    write(efd, &one, 8);
    write(p[1], "z", 1);
    wr(c, "e");
    unsigned long long seen = 0;
    for (int round = 0; round < 3 && seen != (0x2222ULL ^ 0x4444 ^ 0x5555); round++) {
        n = epoll_wait(et, out, 8, 5000);
        for (int i = 0; i < n; i++) seen ^= out[i].data.u64;
    }
    printf("mixed set saw all three: %d\n", seen == (0x2222ULL ^ 0x4444 ^ 0x5555));
    /* MOD and DEL. */
    ev.events = EPOLLOUT;
    ev.data.u64 = 0x6666;
    show("MOD", epoll_ctl(lt, EPOLL_CTL_MOD, a, &ev));
    n = epoll_wait(lt, out, 8, 0);
    printf("after MOD: %d %s %llx\n", n, n ? evname(out[0].events) : "-", n ? (unsigned long long)out[0].data.u64 : 0);
    show("DEL", epoll_ctl(lt, EPOLL_CTL_DEL, a, NULL));
    show("DEL again", epoll_ctl(lt, EPOLL_CTL_DEL, a, NULL));
    printf("after DEL: %d\n", epoll_wait(lt, out, 8, 0));
    /* A blocking epoll_wait woken by a write from another process, and
     * the peer's half-close and close as events. */
    pid_t pid = fork();
    if (pid == 0) {
        wr(c, "from child");
        shutdown(c, SHUT_WR);
        _exit(0);
    }
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = 0x7777;
    epoll_ctl(lt, EPOLL_CTL_ADD, a, &ev);
    n = epoll_wait(lt, out, 8, 10000);
    printf("blocking epoll_wait: %d\n", n > 0);
    waitpid(pid, NULL, 0);
    char buf[32];
    long got = 0;
    ssize_t r;
    while ((r = read(a, buf + got, sizeof buf - got)) != 0) {
        if (r < 0) {
            await(a, POLLIN);
            continue;
        }
        got += r;
    }
    printf("read: %.*s then EOF\n", (int)got, buf);
    n = epoll_wait(lt, out, 8, 0);
    printf("after half-close: %d %s\n", n, n ? evname(out[0].events) : "-");
    close(c);
    await(a, POLLHUP | POLLRDHUP);
    n = epoll_wait(lt, out, 8, 0);
    printf("after close: %d %s\n", n, n ? evname(out[0].events) : "-");
    wr(a, "x");
    await(a, POLLERR | POLLHUP);
    n = epoll_wait(lt, out, 8, 0);
    printf("after the RST: %d %s\n", n, n ? evname(out[0].events & ~EPOLLOUT) : "-");
    close(a);
    printf("closed fds leave the set: %d\n", epoll_wait(lt, out, 8, 0));
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) {
    (void)sig;
    got_usr1 = 1;
}

/* ppoll and pselect6 on a ring fd mixed with kernel fds: timeouts, a
 * wake-up from another process, and the signal mask they install (a
 * signal blocked outside and let through by the call's mask interrupts it
 * with EINTR; one the call's mask blocks waits until after it). */
static void sc_ppoll_pselect(void) {
    int c, a, p[2], u[2];
    pair(&c, &a);
    if (pipe(p) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, u) < 0) die("pipe");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, old, none;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    struct pollfd f[3] = {{a, POLLIN, 0}, {p[0], POLLIN, 0}, {u[0], POLLIN | POLLOUT, 0}};
    struct timespec zero = {0, 0}, short_ts = {0, 30000000}, ten = {10, 0};
    int n = ppoll(f, 3, &zero, NULL);
    printf("ppoll, nothing to read: %d [%s ", n, evname(f[0].revents));
    printf("%s ", evname(f[1].revents));
    printf("%s]\n", evname(f[2].revents));
    f[2].events = POLLIN;
    printf("ppoll times out: %d\n", ppoll(f, 3, &short_ts, &usr1));
    /* Woken by another process's write, the signal mask kept blocking. */
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec d = {0, 20000000};
        nanosleep(&d, NULL);
        wr(c, "wake");
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    n = ppoll(f, 1, &ten, &usr1);
    printf("ppoll woken by data: %d %s\n", n, evname(f[0].revents));
    waitpid(pid, NULL, 0);
    show_read("read", a, 10, 0);
    printf("the blocked signal waited: %d\n", (int)got_usr1);
    /* The pending SIGUSR1 goes through the call's empty mask: EINTR. */
    n = ppoll(f, 1, &ten, &none);
    printf("ppoll with the signal let through: %s, handled %d\n", n < 0 ? errname(errno) : "no", (int)got_usr1);
    got_usr1 = 0;
    /* pselect6 over the three kinds at once. */
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(a, &rd);
    FD_SET(p[0], &rd);
    FD_SET(u[0], &rd);
    int maxfd = a > p[0] ? a : p[0];
    if (u[0] > maxfd) maxfd = u[0];
    printf("pselect times out: %d\n", pselect(maxfd + 1, &rd, NULL, NULL, &short_ts, &usr1));
    wr(c, "x");
    write(p[1], "y", 1);
    write(u[1], "z", 1);
    int ready = 0;
    for (int round = 0; round < 10 && ready < 3; round++) {
        FD_ZERO(&rd);
        FD_SET(a, &rd);
        FD_SET(p[0], &rd);
        FD_SET(u[0], &rd);
        ready = pselect(maxfd + 1, &rd, NULL, NULL, &ten, &usr1);
    }
    printf("pselect, all three: %d a:%d pipe:%d unix:%d\n", ready, FD_ISSET(a, &rd), FD_ISSET(p[0], &rd), FD_ISSET(u[0], &rd));
    char b[4];
    read(a, b, 1);
    read(p[0], b, 1);
    read(u[0], b, 1);
    pid = fork();
    if (pid == 0) {
        struct timespec d = {0, 20000000};
        nanosleep(&d, NULL);
        wr(c, "late");
        _exit(0);
    }
    FD_ZERO(&rd);
    FD_SET(a, &rd);
    FD_SET(p[0], &rd);
    n = pselect(maxfd + 1, &rd, NULL, NULL, NULL, &usr1);
    printf("pselect woken by data: %d a:%d pipe:%d\n", n, FD_ISSET(a, &rd), FD_ISSET(p[0], &rd));
    waitpid(pid, NULL, 0);
    show_read("read", a, 10, 0);
    kill(getpid(), SIGUSR1);
    FD_ZERO(&rd);
    FD_SET(a, &rd);
    n = pselect(a + 1, &rd, NULL, NULL, &ten, &none);
    printf("pselect with the signal let through: %s, handled %d\n", n < 0 ? errname(errno) : "no", (int)got_usr1);
    sigprocmask(SIG_SETMASK, &old, NULL);
}

/* EPOLLHUP and POLLHUP once both directions are shut (the peer's FIN and
 * our own SHUT_WR), seen by a ring fd in a level- and an edge-triggered
 * set and in a poll array next to kernel fds. */
static void sc_epoll_hup(void) {
    int c, a, p[2], u[2];
    pair(&c, &a);
    if (pipe(p) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, u) < 0) die("pipe");
    int lt = epoll_create1(0), et = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = 1};
    epoll_ctl(lt, EPOLL_CTL_ADD, a, &ev);
    ev.data.u64 = 2;
    epoll_ctl(lt, EPOLL_CTL_ADD, u[0], &ev);
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = 3;
    epoll_ctl(et, EPOLL_CTL_ADD, a, &ev);
    struct epoll_event out[8];
    int n;
#define SHOW_SETS(what)                                                                           \
    do {                                                                                          \
        n = epoll_wait(lt, out, 8, 0);                                                            \
        printf("%s: LT %d", what, n);                                                             \
        for (int i = 0; i < n; i++) if (out[i].data.u64 == 1) printf(" ring=%s", evname(out[i].events)); \
        n = epoll_wait(et, out, 8, 0);                                                            \
        printf(" ET %d %s\n", n, n ? evname(out[0].events) : "-");                               \
        fflush(stdout);                                                                           \
    } while (0)
    SHOW_SETS("open");
    shutdown(c, SHUT_WR);
    await(a, POLLRDHUP);
    SHOW_SETS("peer's FIN");
    show_poll("a after the peer's FIN", a);
    shutdown(a, SHUT_WR);
    await(c, POLLRDHUP);
    SHOW_SETS("both directions shut");
    show_poll("a, both shut", a);
    show_poll("c, both shut", c);
    show_read("a reads", a, 10, 0);
    show_read("c reads", c, 10, 0);
    struct pollfd f[4] = {{a, POLLIN, 0}, {p[0], POLLIN, 0}, {u[0], POLLIN, 0}, {c, POLLOUT, 0}};
    n = poll(f, 4, 0);
    printf("poll array: %d [%s ", n, evname(f[0].revents));
    printf("%s ", evname(f[1].revents));
    printf("%s ", evname(f[2].revents));
    printf("%s]\n", evname(f[3].revents));
    close(c);
    /* Only the level-triggered set here: on the rings the peer's close
     * can give the ET set one more (spurious) edge, which the kernel does
     * not (a known difference, harmless to ET users, who must re-read). */
    n = epoll_wait(lt, out, 8, 0);
    printf("after the peer's close: LT %d", n);
    for (int i = 0; i < n; i++) if (out[i].data.u64 == 1) printf(" ring=%s", evname(out[i].events));
    printf("\n");
    show_poll("a after the peer's close", a);
    close(p[1]);
    close(u[1]);
    n = poll(f, 3, 0);
    printf("poll array, kernel peers gone too: %d [%s ", n, evname(f[0].revents));
    printf("%s ", evname(f[1].revents));
    printf("%s]\n", evname(f[2].revents));
#undef SHOW_SETS
    close(a);
    close(p[0]);
    close(u[0]);
    close(lt);
    close(et);
}

static void sc_fork_share(void) {
    int c, a;
    pair(&c, &a);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 1000; i++)
            if (send(c, "C", 1, MSG_NOSIGNAL) != 1) _exit(1);
        _exit(0);
    }
    for (int i = 0; i < 1000; i++)
        if (send(c, "P", 1, MSG_NOSIGNAL) != 1) die("parent write");
    int st;
    waitpid(pid, &st, 0);
    close(c);
    long p = 0, k = 0;
    char buf[512];
    ssize_t r;
    while ((r = read(a, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r; i++) p += buf[i] == 'P', k += buf[i] == 'C';
    printf("child ok: %d, parent bytes %ld, child bytes %ld, then %s\n", WIFEXITED(st) && WEXITSTATUS(st) == 0, p, k, r == 0 ? "EOF" : errname(errno));
    /* The child reads what the peer sends to the shared socket. */
    pair(&c, &a);
    pid = fork();
    if (pid == 0) {
        char b[16];
        ssize_t n = recv(c, b, 5, MSG_WAITALL);
        _exit(n == 5 && memcmp(b, "hello", 5) == 0 ? 0 : 1);
    }
    wr(a, "hello");
    waitpid(pid, &st, 0);
    printf("child read from the shared socket: %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A thread parked in epoll_wait on a connection while another thread forks
 * a child that closes its copies of the fds and exits (a supervisor forked
 * by a server, as `shunt daemon` starts an instance): the parked thread is
 * still woken by the peer's bytes. */
static int parked_ep;
static pid_t parked_tid;
static char parked_saw[64];
static void *parked_waiter(void *arg) {
    (void)arg;
    parked_tid = (pid_t)syscall(SYS_gettid);
    struct epoll_event out[4];
    int n = epoll_wait(parked_ep, out, 4, -1);
    if (n < 0) snprintf(parked_saw, sizeof parked_saw, "%s", errname(errno));
    else snprintf(parked_saw, sizeof parked_saw, "%d %s", n, n > 0 ? evname(out[0].events & ~EPOLLOUT) : "-");
    return NULL;
}

/* Reads /proc/self/task/TID/WHAT into `buf`; its length, or -1. */
static ssize_t read_task(pid_t tid, const char *what, char *buf, size_t len) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, what);
    int fd = open(path, O_RDONLY);
    ssize_t r = fd < 0 ? -1 : read(fd, buf, len - 1);
    if (fd >= 0) close(fd);
    if (r >= 0) buf[r] = 0;
    return r;
}

/* Waits (polling, at most 10 s) until thread `tid` of this process sleeps
 * in the kernel's epoll wait (by its wchan; where the kernel hides wchan,
 * until it sleeps at all). */
static void await_parked(pid_t tid) {
    char w[512];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        ssize_t r = read_task(tid, "wchan", w, sizeof w);
        if (r > 0 && strstr(w, "epoll_wait")) return;
        if (r <= 0 || !strcmp(w, "0")) {
            char *p = read_task(tid, "stat", w, sizeof w) > 0 ? strrchr(w, ')') : NULL;
            if (p && p[1] == ' ' && p[2] == 'S') return;
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < 10);
    printf("FATAL the waiter never parked\n");
    exit(2);
}

static void sc_fork_while_parked(void) {
    int c, a;
    pair(&c, &a);
    /* A round trip first: both directions then run on the rings. */
    wr(c, "ping");
    show_read("ping", a, 4, MSG_WAITALL);
    wr(a, "pong");
    show_read("pong", c, 4, MSG_WAITALL);
    fcntl(a, F_SETFL, O_NONBLOCK);
    parked_ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = 0x1234};
    show("add", epoll_ctl(parked_ep, EPOLL_CTL_ADD, a, &ev));
    /* The fresh registration's first report. */
    struct epoll_event out[4];
    int n = epoll_wait(parked_ep, out, 4, 0);
    printf("first look: %d %s\n", n, n > 0 ? evname(out[0].events) : "-");
    pthread_t t;
    __atomic_store_n(&parked_tid, 0, __ATOMIC_SEQ_CST);
    if (pthread_create(&t, NULL, parked_waiter, NULL)) die("pthread_create");
    while (!__atomic_load_n(&parked_tid, __ATOMIC_SEQ_CST)) sched_yield();
    await_parked(parked_tid);
    pid_t pid = fork();
    if (pid == 0) {
        close(a);
        close(c);
        close(parked_ep);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child ok: %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Still (or again) asleep: the bytes must wake it. */
    await_parked(parked_tid);
    show("write", wr(c, "wake"));
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    if (pthread_timedjoin_np(t, NULL, &until)) {
        printf("parked epoll_wait: still asleep 10 s after the write\n");
        exit(1);
    }
    printf("parked epoll_wait: %s\n", parked_saw);
    show_read("read", a, 16, 0);
}

static void sc_exec(const char *self) {
    int c, a;
    pair(&c, &a);
    int keep = dup(c);
    int gone = fcntl(c, F_DUPFD_CLOEXEC, 0);
    close(c);
    pid_t pid = fork();
    if (pid == 0) {
        char k[16], g[16];
        snprintf(k, sizeof k, "%d", keep);
        snprintf(g, sizeof g, "%d", gone);
        execl(self, self, "exec-child", k, g, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("exec'd child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    show_read("what the exec'd child wrote", a, 64, 0);
    close(keep);
    close(gone);
    await(a, POLLRDHUP);
    show_read("then", a, 64, 0);
}

static int exec_child(int keep, int gone) {
    /* The CLOEXEC copy is gone, the other one works. */
    printf("cloexec copy closed: %d\n", fcntl(gone, F_GETFD) < 0 && errno == EBADF);
    fflush(stdout);
    return send(keep, "written after exec", 18, MSG_NOSIGNAL) == 18 ? 0 : 1;
}

/* A connection that runs on its rings when the process holding one end
 * execs: the new image reads what was sent before the exec and is still
 * unread, then goes on reading and writing; the peer sees every byte in
 * order, then the EOF of the child's exit. Two shapes: fork + exec with
 * the fd kept at its number, and vfork + dup2 onto a fixed number before
 * the exec (what Go's os/exec does with ExtraFiles). */
#define EXEC_BULK 300000 /* more than one ring (256 KiB) */
/* Shapes of exec_ring_once: how the child gets the connection. */
enum { FORK_KEEP, VFORK_DUP2, FORK_CLOSEFROM };
static void exec_ring_once(const char *self, int shape) {
    int c, a;
    pair(&c, &a);
    /* Both directions carry bytes before the exec (the connector's writes
     * and reads have switched to the rings by then). */
    wr(c, "hello from the parent");
    show_exactly("acceptor read", a, 21);
    wr(a, "unread at exec;");
    int keep = fcntl(c, F_DUPFD_CLOEXEC, 0);
    close(c);
    pid_t pid;
    if (shape == FORK_CLOSEFROM) {
        /* What Python's subprocess does with pass_fds: the fd onto a
         * fixed number, every other one closed (close_range). */
        pid = fork();
        if (pid == 0) {
            if (keep != 3 && dup2(keep, 3) < 0) _exit(126);
            if (keep == 3 && fcntl(3, F_SETFD, 0) < 0) _exit(126);
            closefrom(4);
            execl(self, self, "exec-ring-child", "3", (char *)NULL);
            _exit(127);
        }
    } else if (shape == VFORK_DUP2) {
        pid = vfork();
        if (pid == 0) {
            /* onto 7 (below `keep` and the other fds of the scenario's
             * sockets, or above: dup2 does not care), flags cleared */
            if (dup2(keep, 7) < 0) _exit(126);
            execl(self, self, "exec-ring-child", "7", (char *)NULL);
            _exit(127);
        }
    } else {
        pid = fork();
        if (pid == 0) {
            char k[16];
            int fl = fcntl(keep, F_GETFD);
            fcntl(keep, F_SETFD, fl & ~FD_CLOEXEC);
            snprintf(k, sizeof k, "%d", keep);
            execl(self, self, "exec-ring-child", k, (char *)NULL);
            _exit(127);
        }
    }
    close(keep);
    /* What the child reads after its exec, sent while it starts. */
    wr(a, "sent during exec;");
    show_exactly("child says", a, 6);
    wr(a, "after;");
    long sum = 0, got = 0;
    char buf[4096];
    ssize_t r;
    while ((r = read(a, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < r; i++) sum = (sum * 31 + (unsigned char)buf[i]) % 1000000007;
        got += r;
    }
    printf("bulk from the child: %ld bytes, sum %ld, then %s\n", got, sum, r == 0 ? "EOF" : errname(errno));
    int st;
    waitpid(pid, &st, 0);
    printf("exec'd child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    close(a);
}

static void sc_exec_ring(const char *self) {
    printf("fork + exec:\n");
    exec_ring_once(self, FORK_KEEP);
    printf("vfork + dup2 + exec:\n");
    exec_ring_once(self, VFORK_DUP2);
    printf("fork + dup2 + closefrom + exec:\n");
    exec_ring_once(self, FORK_CLOSEFROM);
}

/* Whether a descriptor names a memfd (what the runtime keeps of a ring
 * connection's segment; never the program's to see). */
static int is_memfd(int fd) {
    char p[64], t[256];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, t, sizeof t - 1);
    if (n < 0) return 0;
    t[n] = 0;
    return !strncmp(t, "/memfd:", 7);
}

/* The program's view of its descriptors while ring connections are open:
 * no memfd in /proc/self/fd nor at any number fcntl answers for, and
 * dup2 onto any number works as natively. */
static void sc_hidden_fds(void) {
    int c[4], a[4];
    for (int i = 0; i < 4; i++) {
        pair(&c[i], &a[i]);
        wr(c[i], "x");
        show_exactly("read", a[i], 1);
    }
    int listed = 0, memfds = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        listed++;
        if (is_memfd(atoi(e->d_name))) memfds++;
    }
    if (d) closedir(d);
    printf("memfds listed in /proc/self/fd: %d\n", memfds);
    int probed = 0;
    for (int fd = 3; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0 && is_memfd(fd)) probed++;
    printf("memfds fcntl answers for: %d\n", probed);
    /* dup2 onto the numbers a runtime would pick (above 1000, where an
     * instance's segment broker sits): each is the program's afterwards,
     * and the connections go on. */
    int ok = 0;
    for (int fd = 1001; fd < 1017; fd++) {
        if (dup2(c[0], fd) == fd && fcntl(fd, F_GETFD) == 0) ok++;
        close(fd);
    }
    printf("dup2 onto 1001..1016: %d of 16\n", ok);
    for (int i = 0; i < 4; i++) {
        wr(a[i], "y");
        show_exactly("back", c[i], 1);
        close(c[i]);
        close(a[i]);
    }
    (void)listed;
}

/* Numbers the runtime may hide descriptors at answer poll and select as
 * closed numbers do. The program closes fd 1000 first (under shunt the
 * instance's segment broker's socket, natively nothing), so that ring ends
 * keep their segments' memfds at hidden numbers from 1000 up. */
static void sc_hidden_poll(void) {
    close(1000);
    /* The kernel's select ignores numbers beyond the fd table's size, and
     * answers EBADF for closed ones inside it: grow the table past 1016 so
     * that natively every number asked about is a closed one. */
    if (dup2(0, 1100) == 1100) close(1100);
    int c[4], a[4];
    for (int i = 0; i < 4; i++) {
        pair(&c[i], &a[i]);
        wr(c[i], "x");
        show_exactly("read", a[i], 1);
    }
    int nval = 0, badf = 0, n = 0;
    for (int fd = 1000; fd < 1016; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) continue; /* the program's own */
        n++;
        struct pollfd p[2] = {{fd, POLLIN, 0}, {a[0], POLLIN, 0}};
        int r = poll(p, 2, 5000);
        nval += r == 1 && p[0].revents == POLLNVAL && p[1].revents == 0;
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(fd, &rs);
        FD_SET(a[0], &rs);
        struct timeval tv = {5, 0};
        badf += select(fd + 1, &rs, NULL, NULL, &tv) < 0 && errno == EBADF;
    }
    printf("unused numbers 1000..1015: poll POLLNVAL at once %s, select EBADF %s\n",
           nval == n ? "for each" : "NOT for each", badf == n ? "for each" : "NOT for each");
    for (int i = 0; i < 4; i++) {
        wr(a[i], "y");
        show_exactly("back", c[i], 1);
        close(c[i]);
        close(a[i]);
    }
}

static int exec_ring_child(int fd) {
    char buf[64];
    int want = 15 + 17, got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r <= 0) return 10;
        got += r;
    }
    printf("child read: \"%.*s\"\n", got, buf);
    if (wr(fd, "ready;") != 6) return 11;
    ssize_t r = recv(fd, buf, 6, MSG_WAITALL);
    printf("child read: \"%.*s\"\n", r > 0 ? (int)r : 0, buf);
    static char bulk[EXEC_BULK];
    for (long i = 0; i < EXEC_BULK; i++) bulk[i] = (char)('a' + i % 23);
    long off = 0;
    while (off < EXEC_BULK) {
        ssize_t w = send(fd, bulk + off, EXEC_BULK - off, MSG_NOSIGNAL);
        if (w <= 0) return 12;
        off += w;
    }
    fflush(stdout);
    return 0;
}

/* An exec that carries many ring connections at once (more than any fixed
 * list would hold): N pairs on one listener, each with bytes both ways
 * before the exec and some left unread; every tenth connector end also
 * has a dup. The exec'd child reads what was unread and what was sent
 * during its exec on every connection, and answers on each; the parent
 * checks every byte. Round 1 execs from a vfork child, round 2 from a
 * fork child whose first exec fails (ENOENT) before the real one. Each
 * ring end needs an fd of its own at 1000 or above under shunt, so the
 * scenario raises its soft RLIMIT_NOFILE to the hard limit first, as
 * Go's runtime does at start-up. */
#define EXEC_MANY_REPLY 2000
static void exec_many_round(const char *self, int n, int use_vfork) {
    struct sockaddr_in addr;
    int l = listener(&addr);
    fcntl(l, F_SETFD, FD_CLOEXEC);
    listen(l, n + 16);
    int *cs = calloc(n, sizeof *cs), *as = calloc(n, sizeof *as), *ds = calloc(n, sizeof *ds);
    for (int i = 0; i < n; i++) {
        cs[i] = socket(AF_INET, SOCK_STREAM, 0); /* inherited by the exec */
        if (connect(cs[i], (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    }
    for (int i = 0; i < n; i++)
        if ((as[i] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) die("accept");
    close(l);
    char msg[16];
    for (int i = 0; i < n; i++) {
        snprintf(msg, sizeof msg, "p%03d;", i);
        if (wr(cs[i], msg) != 5) die("send p");
        char got[8];
        if (recv(as[i], got, 5, MSG_WAITALL) != 5 || memcmp(got, msg, 5)) die("recv p");
        snprintf(msg, sizeof msg, "u%03d;", i);
        if (wr(as[i], msg) != 5) die("send u");
        ds[i] = i % 10 == 0 ? dup(cs[i]) : -1;
    }
    /* argv: exec-many-child N fd[/dup]... */
    char **args = calloc(n + 4, sizeof *args);
    char *text = calloc(n, 32);
    args[0] = (char *)self;
    args[1] = "exec-many-child";
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    args[2] = count;
    for (int i = 0; i < n; i++) {
        char *t = text + 32 * i;
        if (ds[i] >= 0) snprintf(t, 32, "%d/%d", cs[i], ds[i]);
        else snprintf(t, 32, "%d", cs[i]);
        args[3 + i] = t;
    }
    args[3 + n] = NULL;
    pid_t pid;
    if (use_vfork) {
        pid = vfork();
        if (pid == 0) {
            execv(self, args);
            _exit(127);
        }
    } else {
        pid = fork();
        if (pid == 0) {
            char missing[64];
            snprintf(missing, sizeof missing, "/nonexistent-%d/sockets", (int)getpid());
            int r = execv(missing, args);
            printf("exec of a missing file: %d %s\n", r, errname(errno));
            fflush(stdout);
            execv(self, args);
            _exit(127);
        }
    }
    if (pid < 0) die("fork");
    for (int i = 0; i < n; i++) {
        close(cs[i]);
        if (ds[i] >= 0) close(ds[i]);
    }
    /* Sent while the child execs. */
    for (int i = 0; i < n; i++) {
        snprintf(msg, sizeof msg, "d%03d;", i);
        if (wr(as[i], msg) != 5) die("send d");
    }
    long good = 0, bytes = 0;
    static char buf[EXEC_MANY_REPLY + 64];
    for (int i = 0; i < n; i++) {
        long got = 0;
        ssize_t r;
        while (got < (long)sizeof buf && (r = read(as[i], buf + got, sizeof buf - got)) > 0) got += r;
        bytes += got;
        snprintf(msg, sizeof msg, "r%03d:", i);
        int ok = got == 5 + EXEC_MANY_REPLY && !memcmp(buf, msg, 5);
        for (long k = 0; ok && k < EXEC_MANY_REPLY; k++) ok = buf[5 + k] == (char)('a' + (i + k) % 26);
        good += ok;
        close(as[i]);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("%s: %d connections, answers intact: %ld, bytes %ld, exec'd child: %d\n",
           use_vfork ? "vfork + exec" : "fork + failed exec + exec", n, good, bytes,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    free(cs), free(as), free(ds), free(args), free(text);
}

static void sc_exec_many(const char *self, int n) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    exec_many_round(self, n, 1);
    exec_many_round(self, n, 0);
}

static int exec_many_child(int n, char **fds) {
    static char reply[5 + EXEC_MANY_REPLY];
    int good = 0;
    for (int i = 0; i < n; i++) {
        int fd = atoi(fds[i]), rd = fd;
        char *slash = strchr(fds[i], '/');
        if (slash) rd = atoi(slash + 1); /* the dup reads, the original answers */
        char got[16], want[32];
        if (recv(rd, got, 10, MSG_WAITALL) != 10) continue;
        snprintf(want, sizeof want, "u%03d;d%03d;", i, i);
        if (memcmp(got, want, 10)) continue;
        char head[32];
        snprintf(head, sizeof head, "r%03d:", i);
        memcpy(reply, head, 5);
        for (int k = 0; k < EXEC_MANY_REPLY; k++) reply[5 + k] = (char)('a' + (i + k) % 26);
        long off = 0;
        while (off < (long)sizeof reply) {
            ssize_t w = send(fd, reply + off, sizeof reply - off, MSG_NOSIGNAL);
            if (w <= 0) break;
            off += w;
        }
        good += off == (long)sizeof reply;
    }
    printf("exec'd child: read and answered on %d of %d connections\n", good, n);
    fflush(stdout);
    return good == n ? 0 : 1;
}

/* An exec that keeps ring connections it cannot carry: the program closes
 * fd 1000 first (under shunt, the instance's segment broker's socket, which
 * would keep the segments; natively nothing, EBADF), and with the soft
 * RLIMIT_NOFILE at 256 no fd at 1000 or above is free, so under shunt no
 * end keeps its segment's memfd either; run without privileges, the exec
 * cannot reopen the segments from /proc/self/map_files. The exec'd child
 * does not use the connections (under shunt they are bare kernel sockets
 * now, whose peers write into rings): it only runs. */
static void sc_exec_uncarried(const char *self, int n) {
    close(1000);
    struct rlimit rl = {256, 256};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = 256;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit");
    }
    struct sockaddr_in addr;
    int l = listener(&addr);
    fcntl(l, F_SETFD, FD_CLOEXEC);
    int *cs = calloc(n, sizeof *cs), *as = calloc(n, sizeof *as);
    for (int i = 0; i < n; i++) {
        cs[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cs[i], (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        if ((as[i] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) die("accept");
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "exec-uncarried-child", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("%d connections kept across the exec, exec'd child: %d\n", n, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    free(cs), free(as);
}

/* A program at the common soft RLIMIT_NOFILE of 1024 execs itself with
 * N ring connections open (to a server it forked before connecting, a
 * process of its own that raised its limit), and the new image checks
 * that every one still works. Under shunt each end must follow the exec
 * without an fd of its own at 1000 or above (only about 23 fit there
 * below 1024). With `fork-exec-self`, a fork child execs with the
 * connections while the parent keeps its ends, and the parent uses them
 * again once the child is done. Every receive has a timeout (a connection
 * that did not follow the exec fails, it does not hang). */
#define ES_BULK 1000
#define ES_TIMEOUT_S 10
static void es_timeout(int fd, int secs) {
    struct timeval tv = {secs, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void es_msg(char *buf, char tag, int i, int bulk) {
    snprintf(buf, 6, "%c%04d", tag, i);
    for (int k = 0; k < bulk; k++) buf[5 + k] = (char)('a' + (i + k) % 26);
}

/* One round on every connection: send a message, read the echo. Returns
 * how many echoed intact; stops at the first that does not. */
static int es_round(int *fds, int n, char tag, int bulk) {
    static char out[5 + ES_BULK + 1], in[5 + ES_BULK + 1];
    int good = 0;
    for (int i = 0; i < n; i++) {
        es_msg(out, tag, i, bulk);
        if (send(fds[i], out, 5 + bulk, MSG_NOSIGNAL) != 5 + bulk) break;
        if (recv(fds[i], in, 5 + bulk, MSG_WAITALL) != 5 + bulk || memcmp(in, out, 5 + bulk)) break;
        good++;
    }
    return good;
}

static int es_server(int l, int n, int rounds) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int *as = calloc(n, sizeof *as);
    for (int i = 0; i < n; i++) {
        if ((as[i] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) return 20;
        es_timeout(as[i], 2 * ES_TIMEOUT_S);
    }
    close(l);
    static char buf[5 + ES_BULK + 1];
    for (int r = 0; r < rounds; r++) {
        int len = r == 0 ? 5 : 5 + ES_BULK;
        for (int i = 0; i < n; i++) {
            if (recv(as[i], buf, len, MSG_WAITALL) != len) return 21;
            if (send(as[i], buf, len, MSG_NOSIGNAL) != len) return 22;
        }
    }
    for (int i = 0; i < n; i++)
        if (read(as[i], buf, 1) != 0) return 23;
    return 0;
}

static void sc_exec_self(const char *self, int n, int fork_first) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max >= 1024) {
        rl.rlim_cur = 1024;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit");
    }
    struct sockaddr_in addr;
    int l = listener(&addr);
    fcntl(l, F_SETFD, FD_CLOEXEC);
    listen(l, n + 16);
    fflush(stdout);
    pid_t srv = fork();
    if (srv < 0) die("fork");
    if (srv == 0) _exit(es_server(l, n, fork_first ? 3 : 2));
    close(l);
    int *cs = calloc(n, sizeof *cs);
    for (int i = 0; i < n; i++) {
        cs[i] = socket(AF_INET, SOCK_STREAM, 0); /* inherited by the exec */
        if (cs[i] < 0) die("socket");
        if (connect(cs[i], (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        es_timeout(cs[i], ES_TIMEOUT_S);
    }
    printf("before the exec: %d of %d connections echo\n", es_round(cs, n, 'a', 0), n);
    fflush(stdout);
    char *list = calloc(n, 12), count[16], spid[16];
    for (int i = 0, w = 0; i < n; i++) w += sprintf(list + w, i ? ",%d" : "%d", cs[i]);
    snprintf(count, sizeof count, "%d", n);
    snprintf(spid, sizeof spid, "%d", (int)srv);
    char *args[] = {(char *)self, "exec-self-child", count, spid, list, fork_first ? "1" : "0", NULL};
    if (!fork_first) {
        execv(self, args);
        die("execv");
    }
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        execv(self, args);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("exec'd child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    printf("the parent after its child's exec: %d of %d connections echo\n", es_round(cs, n, 'c', ES_BULK), n);
    for (int i = 0; i < n; i++) close(cs[i]);
    waitpid(srv, &st, 0);
    printf("server: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static int exec_self_child(int n, pid_t srv, char *list, int forked) {
    int *cs = calloc(n, sizeof *cs), k = 0;
    for (char *t = strtok(list, ","); t && k < n; t = strtok(NULL, ",")) cs[k++] = atoi(t);
    if (k != n) return 30;
    int good = es_round(cs, n, 'b', ES_BULK);
    printf("after the exec: %d of %d connections echo\n", good, n);
    fflush(stdout);
    if (!forked) {
        for (int i = 0; i < n; i++) close(cs[i]);
        int st;
        waitpid(srv, &st, 0);
        printf("server: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    return good == n ? 0 : 1;
}

/* Many connections at once, each carrying a message each way. */
static void sc_many(int n) {
    struct sockaddr_in addr;
    int l = listener(&addr);
    listen(l, n + 16);
    int *cs = calloc(n, sizeof *cs), *as = calloc(n, sizeof *as);
    for (int i = 0; i < n; i++) {
        cs[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cs[i], (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    }
    for (int i = 0; i < n; i++)
        if ((as[i] = accept(l, NULL, NULL)) < 0) die("accept");
    for (int i = 0; i < n; i++)
        if (send(cs[i], &i, sizeof i, 0) != sizeof i) die("send");
    long ok = 0;
    for (int i = 0; i < n; i++) {
        int v;
        if (recv(as[i], &v, sizeof v, MSG_WAITALL) != sizeof v) die("recv");
        if (send(as[i], &v, sizeof v, 0) != sizeof v) die("echo");
    }
    for (int i = 0; i < n; i++) {
        int v;
        if (recv(cs[i], &v, sizeof v, MSG_WAITALL) != sizeof v) die("recv back");
        ok += v == i;
    }
    printf("%d connections, answers in order: %ld\n", n, ok);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: sockets SCENARIO\n");
        return 2;
    }
    const char *s = argv[1];
    if (!strcmp(s, "exec-child") && argc == 4) return exec_child(atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(s, "exec-ring-child") && argc == 3) return exec_ring_child(atoi(argv[2]));
    if (!strcmp(s, "exec-uncarried-child")) return printf("exec'd child ran\n") < 0;
    if (!strcmp(s, "exec-self-child") && argc == 6)
        return exec_self_child(atoi(argv[2]), (pid_t)atoi(argv[3]), argv[4], atoi(argv[5]));
    if (!strcmp(s, "exec-many-child") && argc >= 3 && argc == 3 + atoi(argv[2]))
        return exec_many_child(atoi(argv[2]), argv + 3);
    if (!strcmp(s, "connect-blocking")) sc_connect_blocking();
    else if (!strcmp(s, "connect-nonblocking")) sc_connect_nonblocking();
    else if (!strcmp(s, "accept4")) sc_accept4_flags();
    else if (!strcmp(s, "read-write")) sc_read_write_calls();
    else if (!strcmp(s, "peek-dontwait")) sc_peek_dontwait();
    else if (!strcmp(s, "partial-writes")) sc_partial_writes();
    else if (!strcmp(s, "shutdown")) sc_shutdown();
    else if (!strcmp(s, "close-reset")) sc_close_and_reset();
    else if (!strcmp(s, "linger-reset")) sc_linger_reset();
    else if (!strcmp(s, "splice")) sc_splice();
    else if (!strcmp(s, "sendfile")) sc_sendfile();
    else if (!strcmp(s, "ppoll-pselect")) sc_ppoll_pselect();
    else if (!strcmp(s, "epoll-hup")) sc_epoll_hup();
    else if (!strcmp(s, "peer-dies")) sc_peer_dies();
    else if (!strcmp(s, "dup")) sc_dup();
    else if (!strcmp(s, "nonblock-fionread")) sc_nonblock_fionread();
    else if (!strcmp(s, "names-options")) sc_names_and_options();
    else if (!strcmp(s, "poll-select")) sc_poll_select();
    else if (!strcmp(s, "epoll")) sc_epoll();
    else if (!strcmp(s, "fork")) sc_fork_share();
    else if (!strcmp(s, "fork-while-parked")) sc_fork_while_parked();
    else if (!strcmp(s, "exec")) sc_exec(argv[0]);
    else if (!strcmp(s, "exec-ring")) sc_exec_ring(argv[0]);
    else if (!strcmp(s, "hidden-fds")) sc_hidden_fds();
    else if (!strcmp(s, "hidden-poll")) sc_hidden_poll();
    else if (!strcmp(s, "exec-uncarried")) sc_exec_uncarried(argv[0], argc > 2 ? atoi(argv[2]) : 40);
    else if (!strcmp(s, "exec-many")) sc_exec_many(argv[0], argc > 2 ? atoi(argv[2]) : 200);
    else if (!strcmp(s, "exec-self")) sc_exec_self(argv[0], argc > 2 ? atoi(argv[2]) : 100, 0);
    else if (!strcmp(s, "fork-exec-self")) sc_exec_self(argv[0], argc > 2 ? atoi(argv[2]) : 100, 1);
    else if (!strcmp(s, "many")) sc_many(argc > 2 ? atoi(argv[2]) : 1000);
    else {
        fprintf(stderr, "sockets: unknown scenario %s\n", s);
        return 2;
    }
    return 0;
}
