//! When a new instance is ready: its `/_/health` answers 200, or — for an
//! upstream without that route — it answers HTTP at all (a listening
//! socket that speaks HTTP). of-watchdog answers 503 until its lock file
//! exists; that is "not yet".
//!
//! The probe retries every millisecond (the async timer's resolution)
//! for the first second — an instance of a shunt template listens a few
//! milliseconds after its exec, and a probe that doubles its wait (as it
//! once did, 0.5 ms up to 50 ms) turns that into tens of milliseconds of
//! waiting on its own timer —, then every 10 ms up to 5 s, then every
//! 50 ms, so that a slow upstream (a container, an interpreter) is not
//! polled a thousand times a second. It stops when the instance is ready,
//! has gone, or the deadline passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};

use crate::proxy::Client;
use crate::table::{Replica, GONE};

pub enum Probe {
    /// `listening`: from the probe's start to the first HTTP answer of any
    /// kind; `answered`: to the first 200 (or 404).
    Ready { listening: Duration, answered: Duration },
    Gone,
    TimedOut(String),
}

/// The wait before the next attempt, `waited` after the probe started.
pub fn retry_delay(waited: Duration) -> Duration {
    if waited < Duration::from_secs(1) {
        Duration::from_millis(1)
    } else if waited < Duration::from_secs(5) {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(50)
    }
}

pub async fn until_ready(client: &Client, replica: &Arc<Replica>, deadline: Duration) -> Probe {
    let start = Instant::now();
    let uri = format!("http://{}/_/health", replica.authority);
    let mut listening = None;
    loop {
        if replica.state() == GONE {
            return Probe::Gone;
        }
        let req = Request::get(&uri).header("user-agent", "shunt-health").body(Body::empty());
        let Ok(req) = req else { return Probe::TimedOut(format!("bad health URI {uri}")) };
        let last = match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status();
                let listening = *listening.get_or_insert_with(|| start.elapsed());
                // Read the body to the end so the connection goes back to
                // the pool, warm for the first request.
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
                    return Probe::Ready { listening, answered: start.elapsed() };
                }
                format!("/_/health answered {status}")
            }
            Ok(Err(e)) => format!("cannot connect to {}: {}", replica.authority, crate::proxy::root_cause(&e)),
            Err(_) => "/_/health did not answer within 2s".into(),
        };
        let waited = start.elapsed();
        if waited >= deadline {
            return Probe::TimedOut(format!("not healthy after {}s: {last}", deadline.as_secs()));
        }
        tokio::time::sleep(retry_delay(waited)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_every_millisecond_then_backs_off_to_50ms() {
        assert_eq!(retry_delay(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(retry_delay(Duration::from_millis(999)), Duration::from_millis(1));
        assert_eq!(retry_delay(Duration::from_secs(1)), Duration::from_millis(10));
        assert_eq!(retry_delay(Duration::from_millis(4999)), Duration::from_millis(10));
        assert_eq!(retry_delay(Duration::from_secs(5)), Duration::from_millis(50));
        assert_eq!(retry_delay(Duration::from_secs(60)), Duration::from_millis(50));
    }
}
