//! Function logs: every line an instance writes to stdout or stderr, with
//! its timestamp and instance id, in bounded, rotated per-function files,
//! and a live feed for `follow`.
//!
//! ```text
//! <state>/logs/<ns>/<fn>/current.log   newest lines (NDJSON, one per line)
//! <state>/logs/<ns>/<fn>/1.log … N.log older files, N the oldest
//! ```
//!
//! A line is written with one `write(2)` as it arrives (no buffering in the
//! daemon), so a SIGKILL of the daemon loses nothing already received. Each
//! line carries a sequence number, increasing per function across restarts;
//! `follow` subscribes to the live feed *before* reading the files and then
//! skips live lines the files already gave, so no line is lost or repeated
//! between the two.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::LogMessage;
use crate::names::Key;

/// Size at which `current.log` is rotated.
pub const FILE_BYTES: u64 = 4 << 20;
/// Rotated files kept besides `current.log`.
pub const KEEP_FILES: usize = 3;
/// Longer lines are cut here (the rest is dropped, with a marker).
pub const MAX_LINE: usize = 64 << 10;

/// One stored line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub instance: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub timestamp: String,
    /// Unix nanoseconds (for `since` without parsing `timestamp`).
    pub nanos: i128,
    /// "stdout" or "stderr".
    pub stream: String,
    pub text: String,
}

impl Line {
    pub fn message(&self, key: &Key) -> LogMessage {
        LogMessage {
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            instance: self.instance.clone(),
            timestamp: self.timestamp.clone(),
            text: self.text.clone(),
        }
    }
}

/// Which lines a query wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub instance: Option<String>,
    /// Unix nanoseconds: lines at or after.
    pub since: Option<i128>,
    /// The last N lines (of those that pass the other filters).
    pub tail: Option<usize>,
}

impl Filter {
    pub fn accepts(&self, l: &Line) -> bool {
        self.instance.as_ref().is_none_or(|i| *i == l.instance) && self.since.is_none_or(|s| l.nanos >= s)
    }
}

/// What [`Logs::read`] returns.
pub struct Stored {
    pub lines: Vec<Line>,
    pub live: broadcast::Receiver<Arc<Line>>,
    pub upto: u64,
}

struct FnLog {
    dir: PathBuf,
    file: Mutex<Current>,
    live: broadcast::Sender<Arc<Line>>,
}

struct Current {
    file: Option<File>,
    size: u64,
    next_seq: u64,
}

pub struct Logs {
    root: PathBuf,
    fns: Mutex<HashMap<Key, Arc<FnLog>>>,
}

pub fn rfc3339(t: SystemTime) -> (String, i128) {
    let odt = time::OffsetDateTime::from(t);
    let text = odt
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
    (text, odt.unix_timestamp_nanos())
}

impl Logs {
    pub fn open(root: PathBuf) -> Result<Logs> {
        std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        Ok(Logs { root, fns: Mutex::new(HashMap::new()) })
    }

    fn dir(&self, key: &Key) -> PathBuf {
        self.root.join(&key.namespace).join(&key.name)
    }

    fn get(&self, key: &Key) -> Arc<FnLog> {
        let mut fns = self.fns.lock().unwrap_or_else(|p| p.into_inner());
        fns.entry(key.clone())
            .or_insert_with(|| {
                let dir = self.dir(key);
                let next_seq = last_seq(&dir).map(|s| s + 1).unwrap_or(1);
                let (live, _) = broadcast::channel(1024);
                Arc::new(FnLog { dir, file: Mutex::new(Current { file: None, size: 0, next_seq }), live })
            })
            .clone()
    }

    /// Records one line. Errors (a full disk) are reported once per call to
    /// stderr and otherwise ignored: logging must not stop a function.
    pub fn append(&self, key: &Key, instance: &str, stream: &str, time: SystemTime, text: &[u8]) {
        let log = self.get(key);
        let mut text = String::from_utf8_lossy(&text[..text.len().min(MAX_LINE)]).into_owned();
        if text.len() >= MAX_LINE {
            text.push_str(" [line cut by shunt]");
        }
        let (timestamp, nanos) = rfc3339(time);
        let mut cur = log.file.lock().unwrap_or_else(|p| p.into_inner());
        let line = Line { seq: cur.next_seq, instance: instance.to_string(), timestamp, nanos, stream: stream.into(), text };
        cur.next_seq += 1;
        if let Err(e) = write_line(&log.dir, &mut cur, &line) {
            eprintln!("shunt daemon: cannot write the log of {key}: {e:#}");
        }
        let _ = log.live.send(Arc::new(line));
    }

    /// Whether any line was ever stored for `key`.
    pub fn exists(&self, key: &Key) -> bool {
        self.dir(key).join("current.log").exists()
    }

    /// The stored lines that pass `filter`, oldest first, and the live feed
    /// from which the lines after them come: live lines whose `seq` is at
    /// most `Stored::upto` were in the files already.
    pub fn read(&self, key: &Key, filter: &Filter) -> Result<Stored> {
        let log = self.get(key);
        let live = log.live.subscribe();
        // Hold the writer while reading so that a rotation does not move a
        // file between the listing and the read.
        let cur = log.file.lock().unwrap_or_else(|p| p.into_inner());
        let upto = cur.next_seq - 1;
        let mut files: Vec<PathBuf> = (1..=KEEP_FILES).rev().map(|n| log.dir.join(format!("{n}.log"))).collect();
        files.push(log.dir.join("current.log"));
        let mut out = std::collections::VecDeque::new();
        for f in files {
            let Ok(file) = File::open(&f) else { continue };
            for raw in BufReader::new(file).lines() {
                let Ok(raw) = raw else { break };
                let Ok(line) = serde_json::from_str::<Line>(&raw) else { continue };
                if filter.accepts(&line) {
                    out.push_back(line);
                    if let Some(t) = filter.tail {
                        while out.len() > t {
                            out.pop_front();
                        }
                    }
                }
            }
        }
        Ok(Stored { lines: out.into(), live, upto })
    }

    /// Deletes a function's logs (it was removed).
    pub fn remove(&self, key: &Key) {
        let log = self.fns.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some(log) = log {
            let mut cur = log.file.lock().unwrap_or_else(|p| p.into_inner());
            cur.file = None;
        }
        let _ = std::fs::remove_dir_all(self.dir(key));
    }
}

fn write_line(dir: &Path, cur: &mut Current, line: &Line) -> Result<()> {
    let mut json = serde_json::to_vec(line)?;
    json.push(b'\n');
    if cur.file.is_none() {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("current.log");
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        cur.size = f.metadata()?.len();
        cur.file = Some(f);
    }
    if cur.size > 0 && cur.size + json.len() as u64 > FILE_BYTES {
        cur.file = None;
        rotate(dir)?;
        let f = OpenOptions::new().create(true).append(true).open(dir.join("current.log"))?;
        cur.size = 0;
        cur.file = Some(f);
    }
    if let Some(f) = cur.file.as_mut() {
        f.write_all(&json)?;
        cur.size += json.len() as u64;
    }
    Ok(())
}

/// current → 1, 1 → 2, …; the oldest beyond [`KEEP_FILES`] is dropped.
fn rotate(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dir.join(format!("{KEEP_FILES}.log")));
    for n in (1..KEEP_FILES).rev() {
        let from = dir.join(format!("{n}.log"));
        if from.exists() {
            std::fs::rename(&from, dir.join(format!("{}.log", n + 1)))?;
        }
    }
    std::fs::rename(dir.join("current.log"), dir.join("1.log"))?;
    Ok(())
}

/// The sequence number of the newest stored line.
fn last_seq(dir: &Path) -> Option<u64> {
    for name in std::iter::once("current.log".to_string()).chain((1..=KEEP_FILES).map(|n| format!("{n}.log"))) {
        let Ok(file) = File::open(dir.join(&name)) else { continue };
        let last = BufReader::new(file)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str::<Line>(&l).ok())
            .last();
        if let Some(l) = last {
            return Some(l.seq);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn append_read_filter_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("function", "f", "").unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        {
            let logs = Logs::open(dir.path().into()).unwrap();
            for i in 0..10u64 {
                let inst = if i % 2 == 0 { "a" } else { "b" };
                logs.append(&key, inst, "stdout", t0 + Duration::from_secs(i), format!("line {i}").as_bytes());
            }
        }
        let logs = Logs::open(dir.path().into()).unwrap();
        let all = logs.read(&key, &Filter::default()).unwrap().lines;
        assert_eq!(all.len(), 10);
        assert_eq!(all[3].text, "line 3");
        assert_eq!(all[3].timestamp, "2023-11-14T22:13:23Z");
        let b = logs.read(&key, &Filter { instance: Some("b".into()), tail: Some(2), ..Default::default() }).unwrap().lines;
        assert_eq!(b.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["line 7", "line 9"]);
        let since = rfc3339(t0 + Duration::from_secs(8)).1;
        let s = logs.read(&key, &Filter { since: Some(since), ..Default::default() }).unwrap().lines;
        assert_eq!(s.len(), 2);
        // Sequence numbers continue after a restart.
        logs.append(&key, "a", "stderr", t0, b"after");
        let all = logs.read(&key, &Filter::default()).unwrap().lines;
        assert_eq!(all.last().unwrap().seq, 11);
    }

    #[test]
    fn rotation_bounds_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("function", "f", "").unwrap();
        let logs = Logs::open(dir.path().into()).unwrap();
        let text = vec![b'x'; 60_000];
        let n = (FILE_BYTES as usize * (KEEP_FILES + 2)) / text.len();
        for _ in 0..n {
            logs.append(&key, "a", "stdout", SystemTime::now(), &text);
        }
        let fdir = dir.path().join("openfaas-fn/f");
        let mut total = 0;
        for e in std::fs::read_dir(&fdir).unwrap() {
            total += e.unwrap().metadata().unwrap().len();
        }
        assert!(total <= FILE_BYTES * (KEEP_FILES as u64 + 1), "{total}");
        let all = logs.read(&key, &Filter::default()).unwrap().lines;
        let seqs: Vec<u64> = all.iter().map(|l| l.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "oldest first, none missing in what is kept");
        assert_eq!(*seqs.last().unwrap(), n as u64);
    }

    #[test]
    fn live_lines_follow_the_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("function", "f", "").unwrap();
        let logs = Logs::open(dir.path().into()).unwrap();
        logs.append(&key, "a", "stdout", SystemTime::now(), b"old");
        let mut stored = logs.read(&key, &Filter::default()).unwrap();
        logs.append(&key, "a", "stdout", SystemTime::now(), b"new");
        assert_eq!((stored.lines.len(), stored.upto), (1, 1));
        let next = stored.live.try_recv().unwrap();
        assert_eq!((next.seq, next.text.as_str()), (2, "new"));
    }
}
