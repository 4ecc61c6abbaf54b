#include "log.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>

namespace front {

void log(const char* fmt, ...) {
    char stamp[32] = "";
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    if (localtime_r(&t, &tm)) std::strftime(stamp, sizeof stamp, "%Y/%m/%d %H:%M:%S ", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    std::string line = std::string(stamp) + msg + "\n";
    // One write per line, so that lines of different threads do not mix.
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
        ssize_t w = ::write(STDERR_FILENO, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        left -= std::size_t(w);
    }
}

}  // namespace front
