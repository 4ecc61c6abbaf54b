//! Namespace changes: forwarded, and every cache a namespace could change
//! (credentials in a user namespace, the host name in a UTS namespace) is
//! made stale.

use crate::task::{Call, Ret};

use super::{forward, ids, uname};

fn changes_namespaces(f: &Call) -> Ret {
    let r = forward(f);
    ids::invalidate_creds(f.task.process());
    uname::invalidate();
    r
}

pub fn sys_unshare(f: &mut Call) -> Ret {
    changes_namespaces(f)
}

pub fn sys_setns(f: &mut Call) -> Ret {
    changes_namespaces(f)
}
