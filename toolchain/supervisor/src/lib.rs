//! `shunt-supervisor`: starts function instances and watches over them, one
//! instance's faults touching no other.
//!
//! One library for every front end: `shunt run` (one instance, from plain
//! sync code), `shunt faas up` (a stack's functions), and the function
//! manager (`shunt daemon`, tokio; many instances). A [`Supervisor`] runs one
//! event loop on its own thread; [`Supervisor::spawn`] starts a
//! [`LaunchSpec`] as an [`Instance`] and returns at once; what happens
//! afterwards arrives as [`Event`]s on a channel that sync code reads with
//! `blocking_recv` and async code awaits.
//!
//! ```no_run
//! use shunt_supervisor::{EventKind, LaunchSpec, Runtime, ShuntOptions, Stdio, Supervisor};
//! let sup = Supervisor::start()?;
//! let (tx, mut events) = sup.events();
//! let spec = LaunchSpec::new("python3").arg("-c").arg("print(6 * 7)")
//!     .stdout(Stdio::Lines)
//!     .runtime(Runtime::Shunt(ShuntOptions::default()));
//! let instance = sup.spawn(spec, &tx)?;
//! while let Some(ev) = events.blocking_recv() {
//!     match ev.kind {
//!         EventKind::Output { line, .. } => println!("{}", String::from_utf8_lossy(&line)),
//!         EventKind::Exited(exit) => { println!("{:?}", exit.status); break }
//!         _ => {}
//!     }
//! }
//! # let _ = instance; Ok::<(), anyhow::Error>(())
//! ```
//!
//! What an instance is, and how it is kept apart:
//! - its **first process** (the program) and everything it starts: children,
//!   orphans, daemons. Each instance has a *reaper* (`child.rs`), the child
//!   subreaper of its processes, so orphans stay in their instance; the
//!   instance ends when its program ends, and whatever it left running is
//!   killed then and counted in its stats (as a container's processes end
//!   with its init);
//! - a **cgroup v2** of its own when the machine has a writable cgroup2
//!   hierarchy (`cgroup.kill` ends every process of it at once), and a
//!   **process group** of its own (unless [`ProcessGroup::Inherit`]);
//! - on the shunt runtime, an **instance directory** with its policy, the
//!   runtime's events and a stats segment per process ([`Report`]).
//!
//! Killing (a policy `kill` rule hit in any process, [`Instance::kill`], an
//! expired [`Instance::terminate`]) ends that instance and nothing else; the
//! supervisor waits on its own children only (one pidfd per reaper) and
//! never signals a process it cannot prove is the instance's.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod broker;
mod cgroup;
mod child;
mod event;
mod event_loop;
mod instance_dir;
mod report;
mod runtime;
mod spec;
mod supervisor;

pub use cgroup::MemoryLimit;
pub use event::{Event, EventKind, EventSender, Events, Exit, InstanceId, KillReason, Stream, BACKLOG_HIGH, BACKLOG_LOW};
pub use event_loop::MAX_LINE;
pub use report::{check_stats_path, Report};
pub use runtime::{classify, in_root, load_policy, loader_executable, resolve, runtime_library, Kind, LOADER, RUNTIME_LIBRARY};
pub use spec::{LaunchSpec, PreExec, ProcessGroup, Runtime, ShuntOptions, Spin, Stdio, Transport};
pub use supervisor::{Instance, Options, Supervisor};

/// The compiled policy type instances take.
pub use shunt_policy::Compiled as Policy;
