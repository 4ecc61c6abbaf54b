//! The embedded database (`<state>/state.redb`): deployments with their
//! scale, and the async queue.
//!
//! Every write is one redb transaction committed with immediate durability
//! (fsync) before the API answers, so a deployment the API acknowledged
//! survives a SIGKILL of the daemon or a power cut, and a crash in the
//! middle of a write leaves the previous state. Nothing on the invocation
//! path writes here (Dirigent's rule): replica placement, health, the
//! outstanding-request counters and scale-from-zero wake-ups are soft state,
//! rebuilt on restart.

use std::path::Path;

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::model::FunctionDeployment;
use crate::names::Key;

/// `namespace/name` → [`StoredFunction`] as JSON.
const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
/// Sequence number → [`QueuedCall`] as JSON.
const ASYNC: TableDefinition<u64, &[u8]> = TableDefinition::new("async_queue");

/// A deployment as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredFunction {
    /// As the client sent it, with the namespace filled in.
    pub spec: FunctionDeployment,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The replicas last asked for (deploy, or `/system/scale-function`).
    pub replicas: u64,
    /// The image's manifest digest when it was deployed.
    #[serde(default)]
    pub image_digest: String,
}

/// An `/async-function` call waiting to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueuedCall {
    pub call_id: String,
    pub namespace: String,
    pub name: String,
    pub method: String,
    /// Path below the function, with its query string (`/x?y=1`).
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "bytes_b64")]
    pub body: Vec<u8>,
    pub callback_url: Option<String>,
    /// Unix nanoseconds when it was accepted.
    pub queued_at: u128,
}

pub struct Db {
    /// `None` once closed (the daemon has stopped; its lock on the file is
    /// released so that another run may open it).
    db: std::sync::RwLock<Option<Database>>,
}

fn bad(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("state database: {e}")
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let db = Database::create(path).map_err(bad).with_context(|| format!("cannot open {}", path.display()))?;
        let w = db.begin_write().map_err(bad)?;
        {
            w.open_table(FUNCTIONS).map_err(bad)?;
            w.open_table(ASYNC).map_err(bad)?;
        }
        w.commit().map_err(bad)?;
        Ok(Db { db: std::sync::RwLock::new(Some(db)) })
    }

    /// Releases the database file.
    pub fn close(&self) {
        self.db.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let g = self.db.read().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(db) => f(db),
            None => Err(anyhow::anyhow!("state database: closed (the daemon is stopping)")),
        }
    }

    pub fn functions(&self) -> Result<Vec<(Key, StoredFunction)>> {
        self.with(|db| {
            let r = db.begin_read().map_err(bad)?;
            let t = r.open_table(FUNCTIONS).map_err(bad)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(bad)? {
                let (k, v) = item.map_err(bad)?;
                let Some(key) = Key::from_db_key(k.value()) else { continue };
                let f: StoredFunction = serde_json::from_slice(v.value()).map_err(bad)?;
                out.push((key, f));
            }
            Ok(out)
        })
    }

    pub fn put_function(&self, key: &Key, f: &StoredFunction) -> Result<()> {
        self.with(|db| {
            let json = serde_json::to_vec(f)?;
            let w = db.begin_write().map_err(bad)?;
            w.open_table(FUNCTIONS).map_err(bad)?.insert(key.db_key().as_str(), json.as_slice()).map_err(bad)?;
            w.commit().map_err(bad)
        })
    }

    /// Removes a function and every queued call for it, in one transaction.
    pub fn remove_function(&self, key: &Key) -> Result<()> {
        self.with(|db| {
            let w = db.begin_write().map_err(bad)?;
            {
                w.open_table(FUNCTIONS).map_err(bad)?.remove(key.db_key().as_str()).map_err(bad)?;
                let mut q = w.open_table(ASYNC).map_err(bad)?;
                let mut doomed = Vec::new();
                for item in q.iter().map_err(bad)? {
                    let (seq, v) = item.map_err(bad)?;
                    if let Ok(c) = serde_json::from_slice::<QueuedCall>(v.value()) {
                        if c.name == key.name && c.namespace == key.namespace {
                            doomed.push(seq.value());
                        }
                    }
                }
                for seq in doomed {
                    q.remove(seq).map_err(bad)?;
                }
            }
            w.commit().map_err(bad)
        })
    }

    /// Appends a call; refuses when `limit` calls are waiting already.
    pub fn enqueue(&self, call: &QueuedCall, limit: usize) -> Result<Option<u64>> {
        self.with(|db| {
            let json = serde_json::to_vec(call)?;
            let w = db.begin_write().map_err(bad)?;
            let seq = {
                let mut q = w.open_table(ASYNC).map_err(bad)?;
                if q.len().map_err(bad)? as usize >= limit {
                    return Ok(None);
                }
                let next = q.last().map_err(bad)?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                q.insert(next, json.as_slice()).map_err(bad)?;
                next
            };
            w.commit().map_err(bad)?;
            Ok(Some(seq))
        })
    }

    pub fn queued(&self) -> Result<Vec<(u64, QueuedCall)>> {
        self.with(|db| {
            let r = db.begin_read().map_err(bad)?;
            let t = r.open_table(ASYNC).map_err(bad)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(bad)? {
                let (k, v) = item.map_err(bad)?;
                out.push((k.value(), serde_json::from_slice(v.value()).map_err(bad)?));
            }
            Ok(out)
        })
    }

    pub fn dequeue(&self, seq: u64) -> Result<()> {
        self.with(|db| {
            let w = db.begin_write().map_err(bad)?;
            w.open_table(ASYNC).map_err(bad)?.remove(seq).map_err(bad)?;
            w.commit().map_err(bad)
        })
    }
}

mod bytes_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(t.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str) -> QueuedCall {
        QueuedCall {
            call_id: "c".into(),
            namespace: "openfaas-fn".into(),
            name: name.into(),
            method: "POST".into(),
            path_and_query: "/".into(),
            headers: vec![("X-A".into(), "1".into())],
            body: vec![0, 255, 10],
            callback_url: None,
            queued_at: 1,
        }
    }

    #[test]
    fn functions_and_queue_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let key = Key::new("function", "aes", "").unwrap();
        let f = StoredFunction {
            spec: FunctionDeployment { service: "aes".into(), image: "aes:latest".into(), ..Default::default() },
            created_at: "2026-01-01T00:00:00Z".into(),
            replicas: 2,
            image_digest: "sha256:00".into(),
        };
        {
            let db = Db::open(&path).unwrap();
            db.put_function(&key, &f).unwrap();
            assert_eq!(db.enqueue(&call("aes"), 2).unwrap(), Some(1));
            assert_eq!(db.enqueue(&call("other"), 2).unwrap(), Some(2));
            assert_eq!(db.enqueue(&call("aes"), 2).unwrap(), None, "the queue is bounded");
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.functions().unwrap(), vec![(key.clone(), f)]);
        assert_eq!(db.queued().unwrap().len(), 2);
        db.remove_function(&key).unwrap();
        assert!(db.functions().unwrap().is_empty());
        let left = db.queued().unwrap();
        assert_eq!(left.len(), 1, "the removed function's calls go with it");
        assert_eq!(left[0].1, call("other"));
        db.dequeue(left[0].0).unwrap();
        assert!(db.queued().unwrap().is_empty());
    }
}
