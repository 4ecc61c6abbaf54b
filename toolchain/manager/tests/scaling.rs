//! Scaling rules from labels, as the OpenFaaS certifier exercises them:
//! `com.openfaas.scale.min` on deploy, load scaling between min and max
//! (and not when min = max), and the idler's scale to zero after
//! `com.openfaas.scale.zero-duration` with the next request starting it.
//! Bounded: about 30 s of steady load in all, 10 requests per second.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use support::*;

async fn deploy(d: &Daemon, name: &str, labels: serde_json::Value) {
    let r = post_json(&d.url("/system/functions"), json!({"service": name, "image": "echo:latest", "labels": labels})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

/// Calls the function at `rps` for `secs` (a steady, bounded load).
async fn load(d: &Daemon, name: &str, rps: u32, secs: u64) {
    let url = d.url(&format!("/function/{name}"));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rps);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut calls = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let url = url.clone();
        calls.push(tokio::spawn(async move { call("POST", &url, &[], "").await.status }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_replicas_and_load_scaling() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy(&d, "fn-min", json!({"com.openfaas.scale.min": "2"})).await;
    assert_eq!(get(&d.url("/system/function/fn-min")).await.json()["replicas"], 2);
    wait_status(&d, "fn-min", |s| s["availableReplicas"] == 2).await;

    deploy(&d, "fn-up", json!({"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "2"})).await;
    deploy(&d, "fn-fixed", json!({"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "2"})).await;
    wait_status(&d, "fn-up", |s| s["availableReplicas"] == 1).await;
    wait_status(&d, "fn-fixed", |s| s["availableReplicas"] == 2).await;
    // Over 5 requests/s for 5 s: one more replica, up to max.
    let (a, b) = tokio::join!(load(&d, "fn-up", 10, 10), load(&d, "fn-fixed", 10, 10));
    let _ = (a, b);
    let s = get(&d.url("/system/function/fn-up")).await.json();
    assert_eq!(s["replicas"], 2, "scaled up to max under load: {s}");
    assert_eq!(get(&d.url("/system/function/fn-fixed")).await.json()["replicas"], 2, "min = max: no scaling");
    // Idle again: back to min once the rate falls (within the 10 s window).
    wait_status(&d, "fn-up", |s| s["replicas"] == 1).await;
    let logs = get(&d.url("/system/logs?name=fn-up")).await.text();
    assert!(logs.contains("scaling up to 2") && logs.contains("scaling back to 1"), "{logs}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_functions_scale_to_zero_and_wake() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy(&d, "fn-z", json!({"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "2s"})).await;
    wait_status(&d, "fn-z", |s| s["availableReplicas"] == 1).await;
    assert_eq!(call("POST", &d.url("/function/fn-z"), &[], "").await.status, StatusCode::OK);
    let s = wait_status(&d, "fn-z", |s| s.get("replicas").is_none() && s.get("availableReplicas").is_none()).await;
    assert_eq!(s["labels"]["com.openfaas.scale.zero"], "true");
    // Soft state: what is stored is still the deployment's one replica.
    assert_eq!(d.shared.db.functions().unwrap()[0].1.replicas, 1);
    let r = call("POST", &d.url("/function/fn-z"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(get(&d.url("/metrics")).await.text().contains("shunt_function_cold_starts_total{function_name=\"fn-z.openfaas-fn\"} 1"));
    d.stop().await;
}
