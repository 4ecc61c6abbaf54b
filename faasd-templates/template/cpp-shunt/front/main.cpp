// The cpp-shunt front: the function's handle() behind an HTTP/1.1 server
// that speaks of-watchdog's http-mode contract, in one process.
//
//   handler                    serve (configuration from the environment)
//   handler -run-healthcheck   exit 0 if the lock file exists, else 1
//
// Environment (as of-watchdog reads it; durations are whole seconds or Go
// durations such as 500ms or 1m30s; invalid values keep the default):
//
//   port                  TCP port (8080; 0 = any free port, logged)
//   bind_address          address to listen on (all interfaces); a shunt extension
//   exec_timeout          answer 504 past this (10s; 0 = no limit)
//   read_timeout          longest wait for a request, and to read one (10s)
//   write_timeout         longest wait to write an answer; drain limit (10s; must be over 0)
//   healthcheck_interval  how long requests are still served after SIGTERM (write_timeout)
//   max_inflight          handlers running at once before 429 (0 = no limit)
//   write_debug           true: log every request
//   TMPDIR                where the lock file .lock goes (/tmp)
//
// SIGTERM (or SIGINT): the lock file is removed and the health checks answer
// 503 at once; requests are still served for healthcheck_interval; then the
// listener closes and the requests in flight get up to write_timeout; then
// the process exits 0. A second signal ends it at once (status 1).
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "config.hpp"
#include "log.hpp"
#include "server.hpp"

namespace {

timespec to_timespec(front::Duration d) {
    auto ns = d.count() < 0 ? 0 : d.count();
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    return ts;
}

const char* signal_name(int sig) {
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

// Waits `d` unless one of `set` arrives first; returns the signal or 0.
int sleep_unless_signalled(const sigset_t& set, front::Duration d) {
    auto until = front::Clock::now() + d;
    for (;;) {
        auto left = until - front::Clock::now();
        if (left.count() <= 0) return 0;
        timespec ts = to_timespec(left);
        int sig = ::sigtimedwait(&set, nullptr, &ts);
        if (sig > 0) return sig;
        if (errno != EINTR && errno != EAGAIN) return 0;
    }
}

}  // namespace

int main(int argc, char** argv) {
    front::Config cfg;
    std::string err = front::load_config([](const char* name) { return static_cast<const char*>(std::getenv(name)); }, cfg);
    if (argc == 2 && (std::strcmp(argv[1], "-run-healthcheck") == 0 || std::strcmp(argv[1], "--run-healthcheck") == 0)) {
        return ::access(cfg.lock_path.c_str(), F_OK) == 0 ? 0 : 1;
    }
    if (argc > 1) {
        std::fprintf(stderr, "usage: %s [-run-healthcheck] (configuration from the environment)\n", argv[0]);
        return 2;
    }
    if (!err.empty()) {
        front::log("Error loading config: %s", err.c_str());
        return 1;
    }
    // Every thread inherits this mask; only sigwait below takes the signals.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    front::log("Timeouts: read: %s write: %s hard: %s health: %s", front::format_duration(cfg.read_timeout).c_str(),
               front::format_duration(cfg.write_timeout).c_str(), front::format_duration(cfg.exec_timeout).c_str(),
               front::format_duration(cfg.healthcheck_interval).c_str());
    front::log("Max in-flight: %ld", cfg.max_inflight);

    // Never destroyed: detached connection threads may use it until _exit.
    static front::Server* server = new front::Server(cfg);
    err = server->listen();
    if (err.empty()) err = server->start();
    if (!err.empty()) {
        front::log("%s", err.c_str());
        return 1;
    }
    front::log("Listening on port: %d", server->port());
    front::log("Writing lock-file to: %s", cfg.lock_path.c_str());

    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {
    }
    front::log("%s: no new connections in %s", signal_name(sig), front::format_duration(cfg.healthcheck_interval).c_str());
    front::log("Removing lock-file : %s", cfg.lock_path.c_str());
    server->begin_shutdown();
    if (int again = sleep_unless_signalled(stop, cfg.healthcheck_interval)) {
        front::log("%s again: exiting now, %ld request(s) in flight", signal_name(again), server->in_flight());
        std::fflush(nullptr);
        ::_exit(1);
    }
    server->stop_accepting();
    front::log("No new connections allowed, draining: %ld requests", server->in_flight());
    long left = server->drain(cfg.write_timeout);
    front::log("Exiting. Active connections: %ld", left);
    // Handlers past their exec_timeout may still run on detached threads:
    // end without running destructors under them.
    std::fflush(nullptr);
    ::_exit(0);
}
