//! Linux errno names (x86-64 values), for policies and messages.

pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM), ("ENOENT", libc::ENOENT), ("ESRCH", libc::ESRCH), ("EINTR", libc::EINTR),
    ("EIO", libc::EIO), ("ENXIO", libc::ENXIO), ("E2BIG", libc::E2BIG), ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF), ("ECHILD", libc::ECHILD), ("EAGAIN", libc::EAGAIN), ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES), ("EFAULT", libc::EFAULT), ("EBUSY", libc::EBUSY), ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV), ("ENODEV", libc::ENODEV), ("ENOTDIR", libc::ENOTDIR), ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL), ("ENFILE", libc::ENFILE), ("EMFILE", libc::EMFILE), ("ENOTTY", libc::ENOTTY),
    ("EFBIG", libc::EFBIG), ("ENOSPC", libc::ENOSPC), ("ESPIPE", libc::ESPIPE), ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK), ("EPIPE", libc::EPIPE), ("ERANGE", libc::ERANGE), ("EDEADLK", libc::EDEADLK),
    ("ENAMETOOLONG", libc::ENAMETOOLONG), ("ENOLCK", libc::ENOLCK), ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY), ("ELOOP", libc::ELOOP), ("ENOMSG", libc::ENOMSG),
    ("ENODATA", libc::ENODATA), ("ETIME", libc::ETIME), ("EPROTO", libc::EPROTO),
    ("EOVERFLOW", libc::EOVERFLOW), ("EILSEQ", libc::EILSEQ), ("ENOTSOCK", libc::ENOTSOCK),
    ("EDESTADDRREQ", libc::EDESTADDRREQ), ("EMSGSIZE", libc::EMSGSIZE), ("EPROTOTYPE", libc::EPROTOTYPE),
    ("ENOPROTOOPT", libc::ENOPROTOOPT), ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("EOPNOTSUPP", libc::EOPNOTSUPP), ("EAFNOSUPPORT", libc::EAFNOSUPPORT), ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL), ("ENETDOWN", libc::ENETDOWN), ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNABORTED", libc::ECONNABORTED), ("ECONNRESET", libc::ECONNRESET), ("ENOBUFS", libc::ENOBUFS),
    ("EISCONN", libc::EISCONN), ("ENOTCONN", libc::ENOTCONN), ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNREFUSED", libc::ECONNREFUSED), ("EHOSTUNREACH", libc::EHOSTUNREACH), ("EALREADY", libc::EALREADY),
    ("EINPROGRESS", libc::EINPROGRESS), ("ECANCELED", libc::ECANCELED), ("EOWNERDEAD", libc::EOWNERDEAD),
    ("ENOTSUP", libc::ENOTSUP), ("EDQUOT", libc::EDQUOT),
];

/// The value of an errno name (`"EPERM"` → 1).
pub fn by_name(name: &str) -> Option<u16> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v as u16)
}

/// The name of an errno value, if it has one here.
pub fn name_of(e: u16) -> Option<&'static str> {
    ERRNOS.iter().find(|(_, v)| *v == e as i32).map(|(n, _)| *n)
}
