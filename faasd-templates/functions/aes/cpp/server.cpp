// A minimal HTTP/1.1 front for the AES function: POST (or GET) any path, the
// request body is the plaintext; keep-alive; GET /_/health answers 200.
// Port from $PORT (default 8080; 0 picks a free one). It prints
// "listening on port N" once ready and exits 0 on SIGTERM/SIGINT.
//
//   aes                 serve
//   aes --once TEXT     print the function's answer for TEXT and exit
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "aes.hpp"

namespace {

volatile sig_atomic_t stopping = 0;
int listener = -1;

void on_stop(int) {
    stopping = 1;
}

bool send_all(int fd, const std::string &s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

std::string lower(std::string s) {
    for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Serves one connection until it closes or asks to.
void serve(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string buf;
    char chunk[8192];
    for (;;) {
        size_t end;
        while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
            ssize_t n = ::read(fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || buf.size() > (1 << 20)) { ::close(fd); return; }
            buf.append(chunk, static_cast<size_t>(n));
        }
        std::string head = buf.substr(0, end);
        buf.erase(0, end + 4);
        size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1), eol = head.find("\r\n");
        std::string method = head.substr(0, sp1);
        std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
        std::string version = head.substr(sp2 + 1, eol == std::string::npos ? std::string::npos : eol - sp2 - 1);
        size_t length = 0;
        bool keep = version == "HTTP/1.1";
        for (size_t pos = eol; pos != std::string::npos && pos < head.size();) {
            size_t next = head.find("\r\n", pos + 2);
            std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
            size_t colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = lower(line.substr(0, colon));
                std::string value = line.substr(colon + 1);
                while (!value.empty() && value.front() == ' ') value.erase(0, 1);
                if (name == "content-length") length = std::strtoul(value.c_str(), nullptr, 10);
                if (name == "connection") keep = lower(value) == "keep-alive" || (keep && lower(value) != "close");
            }
            pos = next;
        }
        while (buf.size() < length) {
            ssize_t n = ::read(fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { ::close(fd); return; }
            buf.append(chunk, static_cast<size_t>(n));
        }
        std::string body = buf.substr(0, length);
        buf.erase(0, length);
        std::string status = "200 OK", answer;
        if (path == "/_/health") {
            answer = "OK";
        } else if (method == "POST" || method == "GET" || method == "PUT") {
            answer = aes_fn::handle(body);
        } else {
            status = "405 Method Not Allowed";
        }
        std::string resp = "HTTP/1.1 " + status + "\r\nContent-Type: text/plain\r\nContent-Length: " +
                            std::to_string(answer.size()) + (keep ? "\r\n" : "\r\nConnection: close\r\n") + "\r\n" + answer;
        if (!send_all(fd, resp) || !keep) { ::close(fd); return; }
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc == 3 && std::strcmp(argv[1], "--once") == 0) {
        std::printf("%s\n", aes_fn::handle(argv[2]).c_str());
        return 0;
    }
    const char *port_env = std::getenv("PORT");
    int port = port_env && *port_env ? std::atoi(port_env) : 8080;
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;  // no SA_RESTART: accept returns EINTR
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(listener, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 || listen(listener, 128) != 0) {
        std::perror("aes: bind/listen");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr *>(&addr), &len);
    std::printf("listening on port %d\n", ntohs(addr.sin_port));
    std::fflush(stdout);
    while (!stopping) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            std::perror("aes: accept");
            return 1;
        }
        std::thread(serve, fd).detach();
    }
    return 0;
}
