// The front's HTTP/1.1 server: of-watchdog's http-mode contract, with the
// function called in-process.
//
// Threads: one accepts connections; each connection gets its own thread,
// which reads a request, calls handle() itself and writes the answer
// (keep-alive: then the next request); one timer thread enforces
// exec_timeout. A request past exec_timeout is answered 504 by the timer
// thread, on the connection's socket, which it then shuts for writing; the
// handler keeps running on its thread, and its answer is dropped when it
// returns (the connection is then closed).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "config.hpp"
#include "faas.hpp"
#include "http.hpp"

namespace front {

using Clock = std::chrono::steady_clock;

// A request whose handler runs under exec_timeout. Whoever sets `answered`
// (under `m`) first answers the client: the connection's thread with the
// handler's response, or the timer with 504.
struct Pending {
    std::mutex m;
    bool answered = false;
    int fd = -1;
    Clock::time_point started;
    Clock::time_point deadline;
};

// The exec_timeout timer: one thread, sleeping until the earliest deadline.
class ExecTimer {
public:
    using Expire = void (*)(void* owner, Pending& p);
    ExecTimer(Duration timeout, Expire expire, void* owner);
    ~ExecTimer();
    ExecTimer(const ExecTimer&) = delete;
    ExecTimer& operator=(const ExecTimer&) = delete;

    void add(const std::shared_ptr<Pending>& p);
    void remove(const std::shared_ptr<Pending>& p);

private:
    void run();

    Duration timeout_;
    Expire expire_;
    void* owner_;
    std::mutex m_;
    std::condition_variable cv_;
    std::multimap<Clock::time_point, std::shared_ptr<Pending>> pending_;
    // When the thread will look next; a deadline before it needs a wake-up
    // (with one exec_timeout for all requests, it never comes before).
    Clock::time_point next_wake_;
    bool stop_ = false;
    std::thread thread_;
};

class Server {
public:
    explicit Server(Config cfg);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and listens; returns "" or what went wrong.
    std::string listen();
    int port() const { return port_; }
    // Starts accepting and writes the lock file; returns "" or an error.
    std::string start();

    // SIGTERM, step 1: the lock file is removed and /_/health, /_/ready
    // answer 503 at once; requests are still served.
    void begin_shutdown();
    // Step 2: the listener closes (new connections are refused), idle
    // keep-alive connections are closed, busy ones after their answer.
    void stop_accepting();
    // Step 3: waits until no request is in flight, at most `limit`;
    // returns how many still are.
    long drain(Duration limit);

    long in_flight() const;

private:
    enum class Wait { kReady, kTimeout, kWoken, kError };
    // How answering a request went.
    enum class Outcome {
        kAnswered,  // keep the connection for the next request
        kClosed,    // answered; the connection closes
        kTimedOut,  // the exec timer answered 504 (and counted the request)
        kGone,      // the answer could not be written
    };

    void accept_loop();
    void serve(int fd);
    Wait wait_readable(int fd, Clock::time_point deadline, bool idle) const;
    // Answers one request (HTTP/1.<minor>; keep: the client keeps the connection).
    Outcome respond(int fd, const faas::Request& req, int minor, bool keep);
    faas::Response health(const faas::Request& req, bool ready) const;
    // Sends the answer; `took` (the handler's time) adds X-Duration-Seconds.
    Outcome send_response(int fd, const faas::Request& req, faas::Response& resp, int minor, bool keep,
                          const Duration* took);
    void request_done();
    static void on_expire(void* self, Pending& p);

    Config cfg_;
    int listen_fd_ = -1;
    int wake_fd_ = -1;  // an eventfd, made readable when draining starts
    int port_ = 0;
    std::atomic<bool> accepting_{false};
    std::atomic<bool> draining_{false};
    std::atomic<long> running_{0};  // handlers running (max_inflight)
    mutable std::mutex drain_m_;
    std::condition_variable drain_cv_;
    long active_ = 0;  // requests being read or answered (under drain_m_)
    std::unique_ptr<ExecTimer> timer_;
    std::thread acceptor_;

    friend class RequestGuard;
};

}  // namespace front
