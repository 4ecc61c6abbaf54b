// The front's log: one line per call on stderr, with the local date and
// time first (as Go's log package writes them: "2006/01/02 15:04:05 ").
#pragma once

namespace front {

void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace front
