/* The kernel uapi headers (Debian's linux-libc-dev) that build.rs reads with
 * bindgen: the x86-64 syscall numbers, and the structures the runtime passes
 * to raw system calls. Kernel headers only: glibc's own types may differ
 * from the kernel's (its sigaction, sigset_t), and the runtime never goes
 * through glibc. */
#include <asm/unistd_64.h>
#include <asm/signal.h>
#include <asm/stat.h>
#include <linux/eventpoll.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/poll.h>
#include <linux/socket.h>
#include <linux/time_types.h>
#include <linux/uio.h>
#include <linux/un.h>
#include <linux/utsname.h>
