//! Faults, in process against real function instances: an instance killed
//! with SIGKILL (restarted; the requests meanwhile get quick answers), the
//! daemon stopped with requests in flight (all of them complete), and 200
//! concurrent invocations while the function scales 1 → 3 → 1 (every one
//! answered, none lost). Bounded in count and time; loopback only.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use support::*;

async fn deploy(d: &Daemon, name: &str) {
    let r = post_json(&d.url("/system/functions"), json!({"service": name, "image": "echo:latest"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    wait_status(d, name, |s| s["availableReplicas"] == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_instance() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy(&d, "fn-k").await;
    let first = call("POST", &d.url("/function/fn-k"), &[], "").await;
    let pid = first.json()["pid"].as_i64().unwrap() as i32;
    let instance = first.headers["x-shunt-instance"].to_str().unwrap().to_string();
    // SAFETY: kill has no memory preconditions; the pid is the function's,
    // alive (it just answered).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // Until the restart is ready every request gets an answer, and quickly:
    // 200 from the new instance, or 502/503 while there is none.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut codes = Vec::new();
    loop {
        let t = Instant::now();
        let r = call("POST", &d.url("/function/fn-k"), &[], "").await;
        assert!(t.elapsed() < Duration::from_secs(10), "a request hung for {:?}", t.elapsed());
        codes.push(r.status.as_u16());
        match r.status {
            StatusCode::OK if r.headers["x-shunt-instance"] != instance.as_str() => break,
            StatusCode::OK | StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("unexpected {other}: {}", r.text()),
        }
        assert!(Instant::now() < deadline, "never restarted: {codes:?}");
    }
    let s = wait_status(&d, "fn-k", |s| s["annotations"]["com.shunt.restarts"] == "1").await;
    assert!(s["annotations"]["com.shunt.last-error"].as_str().unwrap().contains("SIGKILL"), "{s}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_finishes_the_requests_in_flight() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy(&d, "fn-t").await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let url = d.url(&format!("/function/fn-t/sleep?ms={}", 300 + 50 * i));
            tokio::spawn(async move { call("POST", &url, &[], "").await })
        })
        .collect();
    // Stop once every call is in flight at the function.
    let f = d.shared.table.get("openfaas-fn", "fn-t").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.outstanding() < 8 {
        assert!(Instant::now() < deadline, "the calls never arrived");
        tokio::task::yield_now().await;
    }
    d.stop().await;
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_while_scaling() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy(&d, "fn-c").await;
    let f = d.shared.table.get("openfaas-fn", "fn-c").unwrap();
    // 20 at a time: the first 100 in flight while it scales up, the other
    // 100 while it scales down.
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(20));
    let wave = |from: usize| -> Vec<_> {
        (from..from + 100)
            .map(|i| {
                let url = d.url(&format!("/function/fn-c/sleep?ms={}", 40 + (i % 5) * 20));
                let limit = limit.clone();
                tokio::spawn(async move {
                    let _permit = limit.acquire_owned().await.unwrap();
                    call("POST", &url, &[], vec![b'x'; i]).await
                })
            })
            .collect()
    };
    let busy = |n: usize| {
        let f = f.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while f.outstanding() < n {
                assert!(Instant::now() < deadline, "calls never in flight");
                tokio::task::yield_now().await;
            }
        }
    };
    let url = d.url("/system/scale-function/fn-c");
    let mut calls = wave(0);
    busy(10).await;
    assert_eq!(post_json(&url, json!({"replicas": 3})).await.status, StatusCode::ACCEPTED);
    wait_status(&d, "fn-c", |s| s["availableReplicas"] == 3).await;
    // The second wave starts once the first has finished, so that what is
    // in flight at the scale-down is the second wave's, on three replicas.
    let mut answers = Vec::new();
    for c in calls.drain(..) {
        answers.push(c.await.unwrap());
    }
    calls = wave(100);
    busy(15).await;
    let spread = f.outstanding();
    assert_eq!(post_json(&url, json!({"replicas": 1})).await.status, StatusCode::ACCEPTED);
    let mut instances = std::collections::HashSet::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    for (i, r) in answers.into_iter().enumerate() {
        assert_eq!(r.status, StatusCode::OK, "call {i}: {}", r.text());
        assert_eq!(r.json()["len"], i, "call {i} got another call's answer");
        instances.insert(r.headers["x-shunt-instance"].to_str().unwrap().to_string());
    }
    wait_status(&d, "fn-c", |s| s["availableReplicas"] == 1 && s["replicas"] == 1).await;
    let metrics = get(&d.url("/metrics")).await.text();
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_function_invocation_total{code=\"200\",function_name=\"fn-c.openfaas-fn\"} ")?.parse().ok())
        .unwrap();
    assert_eq!(counted, 200, "the metrics count every call");
    assert!(instances.len() >= 3, "the second wave ran on the three replicas: {instances:?}");
    eprintln!("200 calls answered by {} instances; {spread} in flight at the scale-down", instances.len());
    d.stop().await;
}
