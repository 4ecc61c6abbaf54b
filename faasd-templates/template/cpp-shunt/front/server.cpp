#include "server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <system_error>
#include <vector>

#include "log.hpp"

namespace front {

// ------------------------------------------------------------- ExecTimer

ExecTimer::ExecTimer(Duration timeout, Expire expire, void* owner)
    : timeout_(timeout), expire_(expire), owner_(owner), next_wake_(Clock::now() + timeout) {
    thread_ = std::thread(&ExecTimer::run, this);
}

ExecTimer::~ExecTimer() {
    {
        std::lock_guard<std::mutex> g(m_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

void ExecTimer::add(const std::shared_ptr<Pending>& p) {
    std::lock_guard<std::mutex> g(m_);
    pending_.emplace(p->deadline, p);
    if (p->deadline < next_wake_) cv_.notify_one();
}

void ExecTimer::remove(const std::shared_ptr<Pending>& p) {
    std::lock_guard<std::mutex> g(m_);
    auto range = pending_.equal_range(p->deadline);
    for (auto it = range.first; it != range.second; ++it) {
        if (it->second == p) {
            pending_.erase(it);
            return;
        }
    }
}

void ExecTimer::run() {
    std::unique_lock<std::mutex> lk(m_);
    std::vector<std::shared_ptr<Pending>> expired;
    while (!stop_) {
        Clock::time_point now = Clock::now();
        while (!pending_.empty() && pending_.begin()->first <= now) {
            expired.push_back(std::move(pending_.begin()->second));
            pending_.erase(pending_.begin());
        }
        if (!expired.empty()) {
            lk.unlock();
            for (auto& p : expired) expire_(owner_, *p);
            expired.clear();
            lk.lock();
            continue;
        }
        // With nothing pending, look again one timeout later: any request
        // added meanwhile has a deadline at or after that.
        next_wake_ = pending_.empty() ? now + timeout_ : pending_.begin()->first;
        cv_.wait_until(lk, next_wake_);
    }
}

// ---------------------------------------------------------------- helpers

namespace {

// Writes all of `parts` (a head and a body) to the socket; SO_SNDTIMEO
// bounds each wait by write_timeout.
bool send_all(int fd, std::string_view head, std::string_view body) {
    iovec iov[2] = {{const_cast<char*>(head.data()), head.size()}, {const_cast<char*>(body.data()), body.size()}};
    int first = head.empty() ? 1 : 0;
    int count = body.empty() ? 1 : 2;
    if (head.empty() && body.empty()) return true;
    while (first < count) {
        msghdr msg{};
        msg.msg_iov = iov + first;
        msg.msg_iovlen = std::size_t(count - first);
        ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;  // error, or write_timeout passed (EAGAIN)
        std::size_t left = std::size_t(n);
        while (first < count && left >= iov[first].iov_len) {
            left -= iov[first].iov_len;
            first++;
        }
        if (first < count) {
            iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
            iov[first].iov_len -= left;
        }
    }
    return true;
}

// Appends what the socket has to `buf`; false on end of stream or error.
bool fill(int fd, std::string& buf) {
    char chunk[65536];
    for (;;) {
        ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        buf.append(chunk, std::size_t(n));
        return true;
    }
}

std::string seconds_text(Duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%f", std::chrono::duration<double>(d).count());
    return buf;
}

timeval to_timeval(Duration d) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(us / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
    return tv;
}

// A short answer of the front itself.
std::string simple_response(int status, std::string_view body, bool close) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
    r += "Date: " + http_date(std::time(nullptr)) + "\r\n";
    if (!body.empty()) r += "Content-Type: text/plain; charset=utf-8\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (close) r += "Connection: close\r\n";
    r += "\r\n";
    r += body;
    return r;
}

}  // namespace

// Counts a request in flight (for the drain) from its first byte until it
// is answered.
class RequestGuard {
public:
    explicit RequestGuard(Server& s) : s_(s) {
        std::lock_guard<std::mutex> g(s_.drain_m_);
        s_.active_++;
    }
    ~RequestGuard() {
        if (!dismissed_) s_.request_done();
    }
    RequestGuard(const RequestGuard&) = delete;
    RequestGuard& operator=(const RequestGuard&) = delete;
    // Someone else (the exec timer) answered, and counted it.
    void dismiss() { dismissed_ = true; }

private:
    Server& s_;
    bool dismissed_ = false;
};

// ----------------------------------------------------------------- Server

Server::Server(Config cfg) : cfg_(std::move(cfg)) {}

Server::~Server() {
    if (acceptor_.joinable()) stop_accepting();
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string Server::listen() {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) return std::string("eventfd: ") + std::strerror(errno);
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family = AF_INET6;
    const std::string& addr = cfg_.bind_address;
    if (addr.empty() || addr.find(':') != std::string::npos) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(static_cast<uint16_t>(cfg_.port));
        a6->sin6_addr = in6addr_any;
        if (!addr.empty() && inet_pton(AF_INET6, addr.c_str(), &a6->sin6_addr) != 1) {
            return "bind_address " + addr + " is not an IP address";
        }
        len = sizeof(sockaddr_in6);
    } else {
        family = AF_INET;
        auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(static_cast<uint16_t>(cfg_.port));
        if (inet_pton(AF_INET, addr.c_str(), &a4->sin_addr) != 1) return "bind_address " + addr + " is not an IP address";
        len = sizeof(sockaddr_in);
    }
    listen_fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0 && family == AF_INET6 && addr.empty()) {
        // No IPv6 here: all IPv4 interfaces.
        family = AF_INET;
        ss = sockaddr_storage{};
        auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(static_cast<uint16_t>(cfg_.port));
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        len = sizeof(sockaddr_in);
        listen_fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (listen_fd_ < 0) return std::string("socket: ") + std::strerror(errno);
    int one = 1, zero = 0;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) ::setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(listen_fd_, 1024) != 0) {
        std::string e = std::strerror(errno);
        ::close(listen_fd_);
        listen_fd_ = -1;
        return "cannot listen on port " + std::to_string(cfg_.port) + ": " + e;
    }
    sockaddr_storage got{};
    socklen_t got_len = sizeof got;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&got), &got_len);
    port_ = got.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&got)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&got)->sin_port);
    return std::string();
}

std::string Server::start() {
    if (cfg_.exec_timeout.count() > 0) timer_ = std::make_unique<ExecTimer>(cfg_.exec_timeout, &Server::on_expire, this);
    accepting_ = true;
    acceptor_ = std::thread(&Server::accept_loop, this);
    // As of-watchdog: the lock file is written once the listener runs.
    int fd = ::open(cfg_.lock_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
    if (fd < 0) return "cannot write the lock file " + cfg_.lock_path + ": " + std::strerror(errno);
    ::close(fd);
    return std::string();
}

void Server::begin_shutdown() {
    accepting_ = false;
    if (::unlink(cfg_.lock_path.c_str()) != 0 && errno != ENOENT) {
        log("cannot remove the lock file %s: %s", cfg_.lock_path.c_str(), std::strerror(errno));
    }
}

void Server::stop_accepting() {
    accepting_ = false;
    draining_ = true;
    // Wakes accept() (EINVAL); the acceptor then closes the listener.
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    // Idle connections wait on wake_fd_ as well as on their socket.
    std::uint64_t one = 1;
    if (::write(wake_fd_, &one, sizeof one) < 0) log("cannot wake idle connections: %s", std::strerror(errno));
}

long Server::drain(Duration limit) {
    std::unique_lock<std::mutex> lk(drain_m_);
    drain_cv_.wait_until(lk, Clock::now() + limit, [this] { return active_ == 0; });
    return active_;
}

long Server::in_flight() const {
    std::lock_guard<std::mutex> g(drain_m_);
    return active_;
}

void Server::request_done() {
    std::lock_guard<std::mutex> g(drain_m_);
    active_--;
    drain_cv_.notify_all();
}

void Server::accept_loop() {
    for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (draining_) break;
            if (e == EINTR || e == ECONNABORTED) continue;
            // Out of descriptors or memory: wait a little rather than spin.
            log("accept: %s", std::strerror(e));
            ::usleep(10000);
            continue;
        }
        try {
            std::thread(&Server::serve, this, fd).detach();
        } catch (const std::system_error& e) {
            log("cannot start a connection thread: %s", e.what());
            ::close(fd);
        }
    }
    ::close(listen_fd_);
    listen_fd_ = -1;
}

Server::Wait Server::wait_readable(int fd, Clock::time_point deadline, bool idle) const {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count() + 1;
        if (deadline <= Clock::now()) return Wait::kTimeout;
        pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        int r = ::poll(fds, idle ? 2 : 1, left > INT_MAX ? INT_MAX : int(left));
        if (r < 0) {
            if (errno == EINTR) continue;
            return Wait::kError;
        }
        if (r == 0) continue;
        if (fds[0].revents) return Wait::kReady;  // data, end of stream or error: read() tells
        if (idle && fds[1].revents) return Wait::kWoken;
    }
}

void Server::serve(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv = to_timeval(cfg_.write_timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string buf;
    for (;;) {
        // Idle: wait for the next request (at most read_timeout, as Go's
        // server without an IdleTimeout); draining closes idle connections.
        if (buf.empty()) {
            if (wait_readable(fd, Clock::now() + cfg_.read_timeout, true) != Wait::kReady) break;
            if (!fill(fd, buf)) break;
        }
        RequestGuard guard(*this);
        // The whole request (head and body) within read_timeout.
        Clock::time_point deadline = Clock::now() + cfg_.read_timeout;
        auto more = [&]() { return wait_readable(fd, deadline, false) == Wait::kReady && fill(fd, buf); };
        Head head;
        std::size_t used = 0;
        int status = 0;
        Parse p;
        bool eof = false;
        while ((p = parse_head(buf, head, used, status)) == Parse::Incomplete) {
            if (!more()) {
                eof = true;
                break;
            }
        }
        if (eof) break;
        if (p == Parse::Error) {
            send_all(fd, simple_response(status, reason_phrase(status), true), {});
            break;
        }
        buf.erase(0, used);
        Framing framing;
        if (int st = body_framing(head.headers, framing)) {
            send_all(fd, simple_response(st, reason_phrase(st), true), {});
            break;
        }
        if (framing.kind == Framing::kLength && framing.length > kMaxBody) {
            send_all(fd, simple_response(413, "request body too large", true), {});
            break;
        }
        bool has_body = framing.kind == Framing::kChunked || (framing.kind == Framing::kLength && framing.length > 0);
        if (has_body && buf.empty() && head.minor >= 1 && has_token(head.headers.get("Expect"), "100-continue")) {
            if (!send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", {})) break;
        }
        faas::Request req;
        bool ok = true;
        if (framing.kind == Framing::kLength) {
            std::size_t n = std::size_t(framing.length);
            while (ok && buf.size() < n) ok = more();
            if (!ok) break;
            if (buf.size() == n) {
                req.body = std::move(buf);
                buf.clear();
            } else {
                req.body.assign(buf, 0, n);
                buf.erase(0, n);
            }
        } else if (framing.kind == Framing::kChunked) {
            ChunkedDecoder dec;
            for (;;) {
                Parse c = dec.feed(buf, req.body, used);
                buf.erase(0, used);
                if (c == Parse::Done) break;
                if (c == Parse::Error) {
                    send_all(fd, simple_response(400, "malformed chunked body", true), {});
                    ok = false;
                    break;
                }
                if (req.body.size() > kMaxBody) {
                    send_all(fd, simple_response(413, "request body too large", true), {});
                    ok = false;
                    break;
                }
                if (!more()) {
                    ok = false;
                    break;
                }
            }
            if (!ok) break;
        }
        bool keep = wants_keep_alive(head);
        req.method = std::move(head.method);
        req.uri = std::move(head.uri);
        req.path = std::move(head.path);
        req.query = std::move(head.query);
        req.headers = std::move(head.headers);
        Outcome o = respond(fd, req, head.minor, keep);
        if (o == Outcome::kTimedOut) {
            guard.dismiss();  // the timer answered 504 and counted it
            break;
        }
        if (o != Outcome::kAnswered) break;
    }
    ::close(fd);
}

Server::Outcome Server::respond(int fd, const faas::Request& req, int minor, bool keep) {
    Clock::time_point start = Clock::now();
    if (req.path == "/_/health" || req.path == "/_/ready") {
        faas::Response r = health(req, req.path == "/_/ready");
        return send_response(fd, req, r, minor, keep, nullptr);
    }
    // max_inflight counts handlers running, including ones past their
    // exec_timeout: they still hold a thread and a core.
    long running = running_.fetch_add(1) + 1;
    if (cfg_.max_inflight > 0 && running > cfg_.max_inflight) {
        running_--;
        faas::Response r(429, "Concurrent request limit exceeded. Max concurrent requests: " +
                                  std::to_string(cfg_.max_inflight) + "\n");
        r.headers.set("Content-Type", "text/plain");
        return send_response(fd, req, r, minor, keep, nullptr);
    }
    std::shared_ptr<Pending> pending;
    if (timer_) {
        pending = std::make_shared<Pending>();
        pending->fd = fd;
        pending->started = start;
        pending->deadline = start + cfg_.exec_timeout;
        timer_->add(pending);
    }
    faas::Response resp;
    try {
        resp = handle(req);
    } catch (const std::exception& e) {
        log("%s %s: the handler threw: %s", req.method.c_str(), req.path.c_str(), e.what());
        resp = faas::Response(500, std::string(e.what()));
    } catch (...) {
        log("%s %s: the handler threw a non-standard exception", req.method.c_str(), req.path.c_str());
        resp = faas::Response(500, "the handler failed");
    }
    running_--;
    if (pending) {
        timer_->remove(pending);
        std::lock_guard<std::mutex> g(pending->m);
        if (pending->answered) return Outcome::kTimedOut;
        pending->answered = true;
    }
    Duration took = Clock::now() - start;
    return send_response(fd, req, resp, minor, keep, &took);
}

faas::Response Server::health(const faas::Request& req, bool ready) const {
    faas::Response r;
    if (req.method != "GET") {
        r.status = 405;
    } else if (!accepting_ || ::access(cfg_.lock_path.c_str(), F_OK) != 0) {
        r.status = 503;
    } else if (ready && cfg_.max_inflight > 0 && running_ >= cfg_.max_inflight) {
        r.status = 429;
    } else {
        r.status = 200;
        r.body = "OK";
    }
    return r;
}

Server::Outcome Server::send_response(int fd, const faas::Request& req, faas::Response& resp, int minor, bool keep,
                                      const Duration* took) {
    if (resp.status < 200 || resp.status > 999) {
        log("%s %s: the handler answered status %d; sending 500", req.method.c_str(), req.path.c_str(), resp.status);
        resp = faas::Response(500, "the handler answered an invalid status " + std::to_string(resp.status));
    }
    bool close = !keep || draining_ || has_token(resp.headers.get("Connection"), "close");
    bool bodiless_status = resp.status == 204 || resp.status == 304;
    bool send_body = !bodiless_status && req.method != "HEAD";
    std::string h;
    h.reserve(256);
    h += "HTTP/1.1 ";
    h += std::to_string(resp.status);
    h += ' ';
    h += reason_phrase(resp.status);
    h += "\r\n";
    bool has_date = false, has_type = false;
    for (const auto& f : resp.headers) {
        // The front frames the message itself.
        const std::string& n = f.first;
        if (faas::iequals(n, "Content-Length") || faas::iequals(n, "Transfer-Encoding") ||
            faas::iequals(n, "Connection") || faas::iequals(n, "Keep-Alive")) {
            continue;
        }
        if (!valid_field(n, f.second)) {
            log("%s %s: dropped an invalid response header field", req.method.c_str(), req.path.c_str());
            continue;
        }
        has_date = has_date || faas::iequals(n, "Date");
        has_type = has_type || faas::iequals(n, "Content-Type");
        h += n;
        h += ": ";
        h += f.second;
        h += "\r\n";
    }
    if (!has_date) h += "Date: " + http_date(std::time(nullptr)) + "\r\n";
    if (!has_type && !resp.body.empty() && !bodiless_status) h += "Content-Type: text/plain; charset=utf-8\r\n";
    if (!bodiless_status) h += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
    if (took) h += "X-Duration-Seconds: " + seconds_text(*took) + "\r\n";
    if (close) {
        h += "Connection: close\r\n";
    } else if (minor == 0) {
        h += "Connection: keep-alive\r\n";
    }
    h += "\r\n";
    bool ok = send_all(fd, h, send_body ? std::string_view(resp.body) : std::string_view());
    if (cfg_.log_requests) {
        log("%s %s - %d %s - ContentLength: %zu (%s)", req.method.c_str(), req.uri.c_str(), resp.status,
            reason_phrase(resp.status), resp.body.size(), took ? format_duration(*took).c_str() : "-");
    }
    if (!ok) return Outcome::kGone;
    return close ? Outcome::kClosed : Outcome::kAnswered;
}

void Server::on_expire(void* self, Pending& p) {
    auto* s = static_cast<Server*>(self);
    {
        std::lock_guard<std::mutex> g(p.m);
        if (p.answered) return;
        p.answered = true;
        std::string r = "HTTP/1.1 504 Gateway Timeout\r\nDate: " + http_date(std::time(nullptr)) +
                        "\r\nContent-Length: 0\r\nX-Duration-Seconds: " + seconds_text(Clock::now() - p.started) +
                        "\r\nConnection: close\r\n\r\n";
        // A few bytes on a socket whose last answer has been sent: this does
        // not block; then the client sees the end of the stream.
        if (::send(p.fd, r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            log("exec_timeout: cannot send 504: %s", std::strerror(errno));
        }
        ::shutdown(p.fd, SHUT_WR);
    }
    log("exec_timeout (%s) passed: answered 504, the handler runs on", format_duration(s->cfg_.exec_timeout).c_str());
    s->request_done();
}

}  // namespace front
