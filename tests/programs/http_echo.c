/* A glibc HTTP/1.1 echo server in the style of the cpp-shunt front (one
 * blocking thread per connection, poll before each read, keep-alive),
 * speaking the protocol of tests/gofixtures/loopback: POST /echo answers the
 * body upper-cased with X-Len, POST /quit answers "bye" and stops the server.
 *
 *   http_echo     listens on 127.0.0.1:0, prints the address as its first
 *                 line, and "server: done" after /quit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static int quit_pipe[2];

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads at least one more byte into buf[*len..cap), waiting in poll first. */
static int fill(int fd, char *buf, size_t *len, size_t cap) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 20000) < 0 && errno == EINTR) {}
    if (p.revents == 0) return -1;
    ssize_t n;
    do n = read(fd, buf + *len, cap - *len); while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    *len += (size_t)n;
    return 0;
}

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *end;
        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
            if (len == cap || fill(fd, buf, &len, cap) < 0) goto out;
        }
        size_t head = (size_t)(end - buf) + 4;
        buf[head - 1] = 0;
        size_t body_len = 0;
        for (char *l = strstr(buf, "\r\n"); l && l < buf + head; l = strstr(l + 2, "\r\n")) {
            if (strncasecmp(l + 2, "content-length:", 15) == 0) body_len = strtoul(l + 17, NULL, 10);
        }
        int quit = strncmp(buf, "POST /quit ", 11) == 0;
        int echo = strncmp(buf, "POST /echo ", 11) == 0;
        if (head + body_len > cap) {
            cap = head + body_len;
            buf = realloc(buf, cap);
        }
        while (len < head + body_len) {
            if (fill(fd, buf, &len, cap) < 0) goto out;
        }
        char *body = buf + head;
        for (size_t i = 0; i < body_len; i++) body[i] = (char)toupper((unsigned char)body[i]);
        char hdr[256], xlen[48] = "";
        if (echo) snprintf(xlen, sizeof xlen, "X-Len: %zu\r\n", body_len);
        const char *out = quit ? "bye" : echo ? body : "";
        size_t out_len = quit ? 3 : echo ? body_len : 0;
        int h = snprintf(hdr, sizeof hdr,
                         "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n%sContent-Length: %zu\r\n\r\n",
                         quit || echo ? "200 OK" : "404 Not Found", xlen, out_len);
        if (write_all(fd, hdr, (size_t)h) < 0 || write_all(fd, out, out_len) < 0) goto out;
        memmove(buf, buf + head + body_len, len - head - body_len);
        len -= head + body_len;
        if (quit) {
            char c = 'q';
            if (write(quit_pipe[1], &c, 1) != 1) abort();
        }
    }
out:
    close(fd);
    free(buf);
    return NULL;
}

static void *acceptor(void *arg) {
    int ln = (int)(long)arg;
    for (;;) {
        int fd = accept4(ln, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("accept4");
            exit(1);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(long)fd) != 0) abort();
        pthread_detach(t);
    }
    return NULL;
}

int main(void) {
    if (pipe(quit_pipe) < 0) return 1;
    int ln = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (ln < 0 || bind(ln, (struct sockaddr *)&a, sizeof a) < 0 || listen(ln, 128) < 0 ||
        getsockname(ln, (struct sockaddr *)&a, &al) < 0) {
        perror("listen");
        return 1;
    }
    printf("127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    pthread_t t;
    if (pthread_create(&t, NULL, acceptor, (void *)(long)ln) != 0) return 1;
    char c;
    while (read(quit_pipe[0], &c, 1) < 0 && errno == EINTR) {}
    /* The answer to /quit was written before the pipe: it is on its way. */
    printf("server: done\n");
    fflush(stdout);
    return 0;
}
