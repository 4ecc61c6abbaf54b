//! What to launch: [`LaunchSpec`] and its parts.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use shunt_policy::Compiled;

/// A program to start as one instance.
///
/// Built like `std::process::Command`: `LaunchSpec::new(program).args(…)
/// .env(…)`. The environment is the supervisor's own unless
/// [`env_clear`](Self::env_clear) is called; `PATH` lookups of a bare
/// program name use the instance's `PATH`.
pub struct LaunchSpec {
    pub(crate) program: OsString,
    pub(crate) arg0: Option<OsString>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env_clear: bool,
    pub(crate) env: BTreeMap<OsString, Option<OsString>>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    pub(crate) runtime: Runtime,
    pub(crate) pre_exec: Option<PreExec>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) process_group: ProcessGroup,
    pub(crate) root: Option<PathBuf>,
    pub(crate) netns: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    pub(crate) owner: Option<(u32, u32)>,
}

/// A hook run in the instance's first process after `fork`, before `exec`
/// (the `image` crate enters the function's mount namespace here).
///
/// It runs in a copy of a possibly multi-threaded process: it may only make
/// async-signal-safe calls (system calls; no allocation, no locks, no
/// printing). An `Err` stops the launch; its errno is reported by `spawn`.
pub type PreExec = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// Where a standard stream of the instance goes.
#[derive(Debug)]
pub enum Stdio {
    /// The supervisor's own stream.
    Inherit,
    /// `/dev/null`.
    Null,
    /// Captured and delivered line by line as [`EventKind::Output`]
    /// events (stdout and stderr only).
    ///
    /// [`EventKind::Output`]: crate::EventKind::Output
    Lines,
    /// This file descriptor (a log file, a socket, one end of a pipe).
    Fd(OwnedFd),
}

/// Whether the instance gets a process group of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProcessGroup {
    /// Its own group (the default): signals meant for the supervisor's group
    /// (a terminal's Ctrl-C) do not reach it; the supervisor decides.
    #[default]
    Own,
    /// The supervisor's group, as a program started from a shell would be:
    /// terminal signals and job control reach it directly. `shunt run`
    /// uses this so that an interactive program behaves as it does natively.
    /// Containment then relies on the cgroup and the instance's reaper.
    Inherit,
}

/// How the instance's programs run.
#[derive(Clone, Default)]
pub enum Runtime {
    /// As they are, without the shunt runtime.
    #[default]
    Native,
    /// On the shunt runtime: dynamic programs and scripts with `libshunt.so`
    /// preloaded, static ones inside `shunt load`.
    Shunt(ShuntOptions),
}

/// Options of an instance on the shunt runtime (what `shunt run` takes).
#[derive(Clone)]
pub struct ShuntOptions {
    /// The policy [default: the built-in FaaS profile].
    pub policy: Option<Compiled>,
    /// Arm the trap fallback (off: calls that miss the gate go unseen).
    pub trap: bool,
    /// Patch glibc in memory (off: glibc's calls reach the runtime as traps).
    pub patch: bool,
    /// Rewrite the syscall sites of every other image (static programs the
    /// loader maps, a dynamic program's own objects) at load time from plans
    /// (off: those calls reach the runtime as traps).
    pub rewrite: bool,
    /// Write the instance's stats report (JSON) here when it ends. Refused
    /// at launch unless it is a new path or a regular file.
    pub stats_file: Option<PathBuf>,
    /// Keep the instance directory (segments, events) for inspection.
    pub keep_instance_dir: bool,
    /// Kernel-enforced policy: every process of the instance runs under a
    /// seccomp filter made from the policy's deny and kill rules
    /// (`shunt-seccomp`), installed before `execve`, so the rules hold
    /// even against a program that bypasses the runtime.
    pub isolate: bool,
    /// The socket transport between co-located instances.
    pub transport: Transport,
    /// How blocking waits spin before they park.
    pub spin: Spin,
    /// The runtime library [default: `$SHUNT_LIB`, else found next to the
    /// shunt executable].
    pub lib: Option<PathBuf>,
    /// The helper executable whose `load` command runs static programs
    /// (`SHUNT_EXE`) [default: [`crate::loader_executable`]: `shunt-load`
    /// next to this executable or the runtime library, else `shunt`].
    pub exe: Option<PathBuf>,
}

impl Default for ShuntOptions {
    fn default() -> Self {
        ShuntOptions {
            policy: None,
            trap: true,
            patch: true,
            rewrite: true,
            stats_file: None,
            keep_instance_dir: false,
            isolate: false,
            transport: Transport::Kernel,
            spin: Spin::Default,
            lib: None,
            exe: None,
        }
    }
}

/// The socket transport of an instance: kernel TCP, or the shared-memory
/// bypass transport between shunt processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// Kernel sockets only.
    #[default]
    Kernel,
    /// Shared-memory rings when both ends are shunt instances.
    SharedMemory,
}

/// The spin policy of blocking waits (`--spin auto|off|MICROSECONDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Spin {
    /// The runtime's default (no spinning yet).
    #[default]
    Default,
    /// Never spin: park at once.
    Never,
    /// Spin adaptively, under the host-wide cap on spinning threads.
    Auto,
    /// Always spin this many microseconds (at most 1,000,000) before parking.
    Micros(u32),
}

impl std::str::FromStr for Spin {
    type Err = String;
    fn from_str(s: &str) -> Result<Spin, String> {
        match s {
            "auto" => Ok(Spin::Auto),
            "off" => Ok(Spin::Never),
            _ => match s.parse::<u32>() {
                Ok(0) => Ok(Spin::Never),
                Ok(n) if n <= 1_000_000 => Ok(Spin::Micros(n)),
                _ => Err(format!("{s:?}: expected auto, off or a number of microseconds (at most 1000000)")),
            },
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "shm" => Ok(Transport::SharedMemory),
            "kernel" => Ok(Transport::Kernel),
            _ => Err(format!("{s:?}: expected shm or kernel")),
        }
    }
}

impl LaunchSpec {
    /// `program`: a path, or a name looked up in the instance's `PATH`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        LaunchSpec {
            program: program.as_ref().to_os_string(),
            arg0: None,
            args: Vec::new(),
            env_clear: false,
            env: BTreeMap::new(),
            cwd: None,
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            runtime: Runtime::Native,
            pre_exec: None,
            memory_limit: None,
            process_group: ProcessGroup::Own,
            root: None,
            netns: None,
            owner: None,
        }
    }

    /// `argv[0]` [default: the program as given].
    pub fn arg0(mut self, arg0: impl AsRef<OsStr>) -> Self {
        self.arg0 = Some(arg0.as_ref().to_os_string());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.insert(key.as_ref().to_os_string(), Some(value.as_ref().to_os_string()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.insert(key.as_ref().to_os_string(), None);
        self
    }

    /// Start from an empty environment instead of the supervisor's.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Standard input: [`Stdio::Inherit`], [`Stdio::Null`] or [`Stdio::Fd`].
    pub fn stdin(mut self, s: Stdio) -> Self {
        self.stdin = s;
        self
    }

    pub fn stdout(mut self, s: Stdio) -> Self {
        self.stdout = s;
        self
    }

    pub fn stderr(mut self, s: Stdio) -> Self {
        self.stderr = s;
        self
    }

    pub fn runtime(mut self, r: Runtime) -> Self {
        self.runtime = r;
        self
    }

    /// The program runs in this network namespace (an open
    /// `/proc/…/ns/net`), entered in its process before the
    /// [`pre_exec`](Self::pre_exec) hook.
    pub fn netns(mut self, ns: std::sync::Arc<std::os::fd::OwnedFd>) -> Self {
        self.netns = Some(ns);
        self
    }

    /// The uid and gid the program will run as (its hook switches to them):
    /// on the runtime its instance directory is given to them, since the
    /// runtime in the program's processes writes there.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// See [`PreExec`].
    pub fn pre_exec(mut self, hook: PreExec) -> Self {
        self.pre_exec = Some(hook);
        self
    }

    /// A memory limit in bytes for the whole instance. Enforced through a
    /// cgroup's memory controller when the machine offers one (v2, or v1 as
    /// on this project's machines); otherwise the instance runs without it
    /// and [`Instance::memory_limit`](crate::Instance::memory_limit) and a
    /// warning event say why.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The program runs in a root of its own (an image's unpacked files,
    /// which the [`pre_exec`](Self::pre_exec) hook pivots into): `program`
    /// is then an absolute path *inside* `root`, classified there (symlinks
    /// followed inside the root, never out of it) and exec'd at that path.
    /// The runtime's files and the instance directory stay host paths: the
    /// hook must make them visible at the same paths. Leave
    /// [`current_dir`](Self::current_dir) unset (the hook sets the working
    /// directory).
    pub fn root(mut self, root: impl AsRef<Path>) -> Self {
        self.root = Some(root.as_ref().to_path_buf());
        self
    }

    pub fn process_group(mut self, g: ProcessGroup) -> Self {
        self.process_group = g;
        self
    }

    /// The environment the instance starts from (before the runtime's own
    /// variables are added).
    pub(crate) fn resolved_env(&self) -> BTreeMap<OsString, OsString> {
        let mut env: BTreeMap<OsString, OsString> =
            if self.env_clear { BTreeMap::new() } else { std::env::vars_os().collect() };
        for (k, v) in &self.env {
            match v {
                Some(v) => {
                    env.insert(k.clone(), v.clone());
                }
                None => {
                    env.remove(k);
                }
            }
        }
        env
    }
}
