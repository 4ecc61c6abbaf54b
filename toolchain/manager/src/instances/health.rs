//! When a new instance is ready: its `/_/health` answers 200, or — for an
//! upstream without that route — it answers HTTP at all (a listening
//! socket that speaks HTTP). of-watchdog answers 503 until its lock file
//! exists; that is "not yet".
//!
//! The probe retries quickly at first (an instance of a shunt template is
//! ready in milliseconds) and backs off to 50 ms, until the instance is
//! ready, has gone, or the deadline passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};

use crate::proxy::Client;
use crate::table::{Replica, GONE};

pub enum Probe {
    Ready(Duration),
    Gone,
    TimedOut(String),
}

pub async fn until_ready(client: &Client, replica: &Arc<Replica>, deadline: Duration) -> Probe {
    let start = Instant::now();
    let uri = format!("http://{}/_/health", replica.authority);
    let mut delay = Duration::from_micros(500);
    loop {
        if replica.state() == GONE {
            return Probe::Gone;
        }
        let req = Request::get(&uri).header("user-agent", "shunt-health").body(Body::empty());
        let Ok(req) = req else { return Probe::TimedOut(format!("bad health URI {uri}")) };
        let last = match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status();
                // Read the body to the end so the connection goes back to
                // the pool, warm for the first request.
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
                    return Probe::Ready(start.elapsed());
                }
                format!("/_/health answered {status}")
            }
            Ok(Err(e)) => format!("cannot connect to {}: {}", replica.authority, crate::proxy::root_cause(&e)),
            Err(_) => "/_/health did not answer within 2s".into(),
        };
        if start.elapsed() >= deadline {
            return Probe::TimedOut(format!("not healthy after {}s: {last}", deadline.as_secs()));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
