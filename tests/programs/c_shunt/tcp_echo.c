/* A loopback TCP echo server (thread) and client. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listener;

static void *serve(void *arg) {
    (void)arg;
    int c = accept(listener, 0, 0);
    char buf[4096];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0) {
        ssize_t off = 0;
        while (off < n) off += write(c, buf + off, n - off);
    }
    close(c);
    return 0;
}

int main(void) {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 4)) { perror("bind"); return 1; }
    socklen_t len = sizeof a;
    getsockname(listener, (struct sockaddr *)&a, &len);
    pthread_t t;
    pthread_create(&t, 0, serve, 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
    long total = 0;
    for (int i = 0; i < 500; i++) {
        char msg[64], back[64];
        int n = snprintf(msg, sizeof msg, "message %d", i);
        if (write(s, msg, n) != n) return 2;
        int got = 0;
        while (got < n) {
            ssize_t r = read(s, back + got, n - got);
            if (r <= 0) return 3;
            got += r;
        }
        if (memcmp(msg, back, n)) return 4;
        total += n;
    }
    shutdown(s, SHUT_WR);
    pthread_join(t, 0);
    close(s);
    close(listener);
    printf("echoed %ld bytes in 500 round trips\n", total);
    return 0;
}
