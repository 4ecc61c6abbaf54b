//! Namespace changes: forwarded, and every cache a namespace could change
//! (credentials in a user namespace, the host name in a UTS namespace) is
//! made stale.

use crate::dispatch::Ret;
use crate::layout::GateFrame;

use super::{forward, ids, uname};

fn changes_namespaces(f: &GateFrame) -> Ret {
    let r = forward(f);
    ids::invalidate_creds();
    uname::invalidate();
    r
}

pub fn sys_unshare(f: &mut GateFrame) -> Ret {
    changes_namespaces(f)
}

pub fn sys_setns(f: &mut GateFrame) -> Ret {
    changes_namespaces(f)
}
