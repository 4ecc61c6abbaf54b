//! The daemon's HTTP API and gateway, in process, against real function
//! processes: every route with its shapes and status codes, scaling and
//! scale from zero, restarts, logs, secrets, async calls with callbacks,
//! bad input, and a restart of the daemon on the same state.
//!
//! Bounded: each test deploys a handful of Python instances and finishes in
//! seconds; the whole file in well under a minute.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::*;

fn echo(name: &str) -> serde_json::Value {
    json!({"service": name, "image": "echo:latest", "envVars": {"GREETING": "hello"},
           "labels": {"team": "a"}, "annotations": {"note": "x"}})
}

async fn deploy_ready(d: &Daemon, spec: serde_json::Value) {
    let name = spec["service"].as_str().unwrap().to_string();
    let r = post_json(&d.url("/system/functions"), spec).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    wait_status(d, &name, |s| s["availableReplicas"].as_u64() >= Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_list_describe_invoke_remove() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy_ready(&d, echo("fn-a")).await;

    let list = get(&d.url("/system/functions")).await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let f = &list[0];
    assert_eq!(f["name"], "fn-a");
    assert_eq!(f["namespace"], "openfaas-fn");
    assert_eq!(f["image"], "echo:latest");
    assert_eq!(f["replicas"], 1);
    assert_eq!(f["availableReplicas"], 1);
    assert_eq!(f["labels"]["team"], "a");
    assert_eq!(f["labels"]["faas_function"], "fn-a");
    assert_eq!(f["annotations"]["note"], "x");
    assert_eq!(f["annotations"]["com.shunt.restarts"], "0");
    assert!(f["createdAt"].as_str().unwrap().ends_with('Z'));

    // Every verb, a path, a query string and headers reach the function.
    for verb in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let r = call(verb, &d.url("/function/fn-a/some/path?x=1&y=two"), &[("x-test", "yes")], "body").await;
        assert_eq!(r.status, StatusCode::OK, "{verb}: {}", r.text());
        let j = r.json();
        assert_eq!(j["method"], verb);
        assert_eq!(j["path"], "/some/path?x=1&y=two");
        assert_eq!(j["headers"]["x-test"], "yes");
        assert_eq!(j["greeting"], "hello");
        assert_eq!(j["len"], 4);
        assert!(!r.headers["x-call-id"].is_empty());
        assert!(r.headers["x-start-time"].to_str().unwrap().parse::<u128>().is_ok());
        assert!(r.headers["x-shunt-gateway-us"].to_str().unwrap().parse::<u64>().is_ok());
        assert!(r.headers["x-shunt-instance"].to_str().unwrap().starts_with("fn-a-"));
    }
    // The namespace may be named, and the function's TMPDIR is its own.
    let r = call("POST", &d.url("/function/fn-a.openfaas-fn"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["tmp"].as_str().unwrap().contains("/run/fn-a-"));
    // A 1 MiB body arrives whole.
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let want = big.iter().map(|&b| b as u64).sum::<u64>() % 65521;
    let r = call("POST", &d.url("/function/fn-a"), &[], big).await;
    assert_eq!(r.json()["len"], 1 << 20);
    assert_eq!(r.json()["sum"], want);

    let one = get(&d.url("/system/function/fn-a")).await.json();
    assert!(one["invocationCount"].as_f64().unwrap() >= 7.0);

    let metrics = get(&d.url("/metrics")).await.text();
    assert!(metrics.contains("gateway_function_invocation_total{code=\"200\",function_name=\"fn-a.openfaas-fn\"}"), "{metrics}");
    assert!(metrics.contains("gateway_service_count{function_name=\"fn-a.openfaas-fn\"} 1"));
    assert!(metrics.contains("gateway_functions_seconds_bucket"));
    assert!(metrics.contains("shunt_instance_start_seconds_count{function_name=\"fn-a.openfaas-fn\"} 1"));

    let r = delete_json(&d.url("/system/functions"), json!({"functionName": "fn-a"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = call("POST", &d.url("/function/fn-a"), &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&d.url("/system/function/fn-a")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&d.url("/system/functions")).await.json(), json!([]));
    assert!(!get(&d.url("/metrics")).await.text().contains("fn-a.openfaas-fn"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_down_and_from_zero() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy_ready(&d, echo("fn-s")).await;

    let r = post_json(&d.url("/system/scale-function/fn-s"), json!({"serviceName": "fn-s", "replicas": 3})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(get(&d.url("/system/function/fn-s")).await.json()["replicas"], 3, "the answer counts the new replicas at once");
    wait_status(&d, "fn-s", |s| s["availableReplicas"] == 3).await;
    // Three instances serve: least-outstanding spreads concurrent calls.
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let calls = (0..6).map(|_| {
            let url = d.url("/function/fn-s/sleep?ms=100");
            tokio::spawn(async move { call("POST", &url, &[], "").await })
        });
        for c in calls {
            let r = c.await.unwrap();
            assert_eq!(r.status, StatusCode::OK);
            seen.insert(r.headers["x-shunt-instance"].to_str().unwrap().to_string());
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // To zero: nothing runs; the next call starts one and waits for it.
    let r = post_json(&d.url("/system/scale-function/fn-s"), json!({"serviceName": "fn-s", "replicas": 0})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let s = get(&d.url("/system/function/fn-s")).await.json();
    assert!(s.get("replicas").is_none(), "replicas 0 is left out, as faas-provider does: {s}");
    wait_status(&d, "fn-s", |s| s.get("availableReplicas").is_none()).await;
    let r = call("POST", &d.url("/function/fn-s"), &[], "wake").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let s = get(&d.url("/system/function/fn-s")).await.json();
    assert_eq!(s["replicas"], 1);
    let metrics = get(&d.url("/metrics")).await.text();
    assert!(metrics.contains("shunt_function_cold_starts_total{function_name=\"fn-s.openfaas-fn\"} 1"), "{metrics}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_is_restarted_and_counted() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy_ready(&d, echo("fn-c")).await;
    let before = get(&d.url("/function/fn-c")).await.headers["x-shunt-instance"].clone();
    let r = call("POST", &d.url("/function/fn-c/crash"), &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let s = wait_status(&d, "fn-c", |s| s["annotations"]["com.shunt.restarts"] == "1" && s["availableReplicas"] == 1).await;
    assert!(s["annotations"]["com.shunt.last-error"].as_str().unwrap().contains("exit status 3"), "{s}");
    let after = get(&d.url("/function/fn-c")).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_ne!(after.headers["x-shunt-instance"], before);
    assert!(get(&d.url("/metrics")).await.text().contains("shunt_function_restarts_total{function_name=\"fn-c.openfaas-fn\"} 1"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_since_instance_follow() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy_ready(&d, echo("fn-l")).await;
    for i in 0..3 {
        assert_eq!(call("POST", &d.url(&format!("/function/fn-l/n{i}")), &[], "").await.status, StatusCode::OK);
    }
    let all = get(&d.url("/system/logs?name=fn-l&follow=false")).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.headers["content-type"], "application/x-ndjson");
    let lines: Vec<serde_json::Value> = all.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    for i in 0..3 {
        assert!(texts.contains(&format!("request POST /n{i}").as_str()), "{texts:?}");
    }
    assert!(texts.contains(&"stderr line"));
    for l in &lines {
        assert_eq!(l["name"], "fn-l");
        assert_eq!(l["namespace"], "openfaas-fn");
        assert!(l["instance"].as_str().unwrap().starts_with("fn-l-"));
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let tail = get(&d.url("/system/logs?name=fn-l&tail=2&follow=false")).await.text();
    assert_eq!(tail.lines().count(), 2);
    let since = get(&d.url("/system/logs?name=fn-l&since=2999-01-01T00:00:00Z")).await.text();
    assert_eq!(since, "");
    let inst = lines.iter().find(|l| l["text"] == "request POST /n0").unwrap()["instance"].as_str().unwrap().to_string();
    let by = get(&d.url(&format!("/system/logs?name=fn-l&instance={inst}"))).await.text();
    assert!(by.lines().count() >= 3);
    let by_other = get(&d.url("/system/logs?name=fn-l&instance=nobody")).await.text();
    assert_eq!(by_other, "");

    // follow: the stored lines, then new ones as they are written.
    let client = shunt_manager::proxy::client(Default::default());
    let req = http::Request::get(d.url("/system/logs?name=fn-l&tail=1&follow=true")).body(axum::body::Body::empty()).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = String::new();
    assert_eq!(call("POST", &d.url("/function/fn-l/later"), &[], "").await.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !got.contains("request POST /later") {
        let frame = tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(&mut body)).await.expect("the new line streams");
        let frame = frame.unwrap().unwrap();
        if let Some(data) = frame.data_ref() {
            got.push_str(&String::from_utf8_lossy(data));
        }
    }
    drop(body);
    // Bad queries.
    assert_eq!(get(&d.url("/system/logs")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&d.url("/system/logs?name=fn-l&since=yesterday")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&d.url("/system/logs?name=fn-l&follow=maybe")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&d.url("/system/logs?name=nope")).await.status, StatusCode::NOT_FOUND);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_crud_and_a_function_that_reads_one() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    let url = d.url("/system/secrets");
    assert_eq!(get(&url).await.json(), json!([]));
    assert_eq!(post_json(&url, json!({"name": "api-key", "value": "one"})).await.status, StatusCode::CREATED);
    assert_eq!(post_json(&url, json!({"name": "api-key", "value": "again"})).await.status, StatusCode::CONFLICT);
    assert_eq!(post_json(&url, json!({"name": "raw", "rawValue": "AAEC"})).await.status, StatusCode::CREATED);
    assert_eq!(get(&url).await.json(), json!([{"name": "api-key", "namespace": "openfaas-fn"}, {"name": "raw", "namespace": "openfaas-fn"}]));
    let mut spec = echo("fn-k");
    spec["secrets"] = json!(["api-key"]);
    spec["envVars"]["SECRET_NAME"] = json!("api-key");
    deploy_ready(&d, spec.clone()).await;
    assert_eq!(call("POST", &d.url("/function/fn-k"), &[], "").await.json()["secret"], "one");
    // An update reaches the function at its next deploy.
    assert_eq!(put_json(&url, json!({"name": "api-key", "value": "two"})).await.status, StatusCode::ACCEPTED);
    assert_eq!(put_json(&url, json!({"name": "nope", "value": "x"})).await.status, StatusCode::NOT_FOUND);
    spec["annotations"]["rev"] = json!("2");
    assert_eq!(put_json(&d.url("/system/functions"), spec.clone()).await.status, StatusCode::ACCEPTED);
    wait_status(&d, "fn-k", |s| s["annotations"]["rev"] == "2").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // The old instance serves until the new one is ready (rolling).
        let r = call("POST", &d.url("/function/fn-k"), &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        if r.json()["secret"] == "two" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new instance never served");
        let mut ready = d.shared.table.get("openfaas-fn", "fn-k").unwrap().watch_ready();
        let _ = tokio::time::timeout(Duration::from_millis(100), ready.changed()).await;
    }
    // Deploying with a secret that does not exist is refused.
    let mut bad = echo("fn-k2");
    bad["secrets"] = json!(["missing"]);
    let r = post_json(&d.url("/system/functions"), bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("secret missing does not exist"), "{}", r.text());
    assert_eq!(delete_json(&url, json!({"name": "raw"})).await.status, StatusCode::ACCEPTED);
    assert_eq!(delete_json(&url, json!({"name": "raw"})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&url).await.json().as_array().unwrap().len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_written() {
    let dir = state_dir();
    let d = start_with(dir.path(), true, false, |c| {
        c.max_body = 1 << 20;
        c.max_api_body = 64 << 10;
    })
    .await;
    let auth = format!("Basic {}", base64_encode(&format!("admin:{}", d.password())));
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let fns = d.url("/system/functions");
    // Auth: none, wrong, right; never on /function or /healthz.
    assert_eq!(get(&fns).await.status, StatusCode::UNAUTHORIZED);
    let wrong = format!("Basic {}", base64_encode("admin:wrong"));
    let r = call("GET", &fns, &[("authorization", &wrong)], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("www-authenticate"));
    assert_eq!(call("GET", &fns, &h, "").await.status, StatusCode::OK);
    assert_eq!(get(&d.url("/healthz")).await.status, StatusCode::OK);
    assert_eq!(call("POST", &d.url("/function/nothing"), &[], "").await.status, StatusCode::NOT_FOUND);
    let info = call("GET", &d.url("/system/info"), &h, "").await.json();
    assert_eq!(info["provider"]["provider"], "shunt");
    assert_eq!(info["provider"]["orchestration"], "shunt");
    assert!(!info["provider"]["version"]["sha"].as_str().unwrap().is_empty());
    assert!(!info["version"]["release"].as_str().unwrap().is_empty());

    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid JSON"),
        (b"[1,2]".to_vec(), StatusCode::BAD_REQUEST, "invalid JSON"),
        (vec![b' '; 70 << 10], StatusCode::PAYLOAD_TOO_LARGE, "over the limit"),
        (br#"{"service":"a/b","image":"echo:latest"}"#.to_vec(), StatusCode::BAD_REQUEST, "contains '/'"),
        (br#"{"service":"..","image":"echo:latest"}"#.to_vec(), StatusCode::BAD_REQUEST, "contains '.'"),
        (b"{\"service\":\"a\\u0000b\",\"image\":\"echo:latest\"}".to_vec(), StatusCode::BAD_REQUEST, "NUL"),
        (format!(r#"{{"service":"{}","image":"echo:latest"}}"#, "a".repeat(64)).into_bytes(), StatusCode::BAD_REQUEST, "longer than 63"),
        (br#"{"service":"Upper","image":"echo:latest"}"#.to_vec(), StatusCode::BAD_REQUEST, "lowercase"),
        (br#"{"service":"ok","namespace":"a_b","image":"echo:latest"}"#.to_vec(), StatusCode::BAD_REQUEST, "namespace"),
        (br#"{"service":"ok","image":"missing:latest"}"#.to_vec(), StatusCode::BAD_REQUEST, "not in the store"),
        (br#"{"service":"ok","image":"broken:latest"}"#.to_vec(), StatusCode::BAD_REQUEST, "fails its digest"),
        (br#"{"service":"ok","image":""}"#.to_vec(), StatusCode::BAD_REQUEST, "no image"),
        (br#"{"service":"ok","image":"echo:latest","labels":{"com.openfaas.scale.min":"x"}}"#.to_vec(), StatusCode::BAD_REQUEST, "whole number"),
        (br#"{"service":"ok","image":"echo:latest","limits":{"memory":"lots"}}"#.to_vec(), StatusCode::BAD_REQUEST, "not a size"),
        (br#"{"service":"ok","image":"echo:latest","envVars":{"A=B":"c"}}"#.to_vec(), StatusCode::BAD_REQUEST, "environment variable"),
    ];
    for (body, status, why) in cases {
        let r = call("POST", &fns, &h, body.clone()).await;
        assert_eq!(r.status, status, "{}: {}", String::from_utf8_lossy(&body[..body.len().min(80)]), r.text());
        assert!(r.text().contains(why), "want {why:?} in {:?}", r.text());
        assert_eq!(r.text().lines().count(), 1, "one line: {:?}", r.text());
    }
    // Unknown functions: 404 for every API that names one.
    let r = call("GET", &d.url("/system/function/nope"), &h, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call("PUT", &fns, &h, serde_json::to_vec(&echo("nope")).unwrap()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call("DELETE", &fns, &h, br#"{"functionName":"nope"}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call("POST", &d.url("/system/scale-function/nope"), &h, br#"{"replicas":1}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(call("POST", &d.url("/function/a%2Fb"), &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(call("POST", &d.url("/function/UPPER"), &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(call("POST", &d.url("/function/.openfaas-fn"), &[], "").await.status, StatusCode::NOT_FOUND);
    // Nothing of the above reached the state.
    assert_eq!(call("GET", &fns, &h, "").await.json(), json!([]));
    assert!(d.shared.db.functions().unwrap().is_empty());
    let secrets = d.url("/system/secrets");
    let r = call("POST", &secrets, &h, br#"{"name":"../x","value":"v"}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call("POST", &secrets, &h, br#"{"name":"empty"}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(call("GET", &secrets, &h, "").await.json(), json!([]));

    // A body over the limit for a function: 413, the function never sees it.
    let r = call("POST", &fns, &h, serde_json::to_vec(&echo("fn-b")).unwrap()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    wait_status_auth(&d, &auth, "fn-b").await;
    let r = call("POST", &d.url("/function/fn-b"), &[], vec![b'x'; (1 << 20) + 1]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    let r = call("POST", &d.url("/system/scale-function/fn-b"), &h, br#"{"replicas":5000}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call("POST", &d.url("/system/scale-function/fn-b"), &h, br#"{"serviceName":"other","replicas":1}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call("POST", &fns, &h, serde_json::to_vec(&echo("fn-b")).unwrap()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    d.stop().await;
}

async fn wait_status_auth(d: &Daemon, auth: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ready = d.shared.table.get("openfaas-fn", name).unwrap().watch_ready();
    loop {
        let r = call("GET", &d.url(&format!("/system/function/{name}")), &[("authorization", auth)], "").await;
        if r.json()["availableReplicas"] == 1 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline);
        let _ = tokio::time::timeout(Duration::from_millis(100), ready.changed()).await;
    }
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_reach_the_callback() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    deploy_ready(&d, echo("fn-q")).await;
    // The test's callback listener.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb = format!("http://{}/done", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/done",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "thanks"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = call("POST", &d.url(&format!("/async-function/fn-q/job{i}")), &[("x-callback-url", cb.as_str())], "payload").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        ids.push(r.headers["x-call-id"].to_str().unwrap().to_string());
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let (h, body) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("a callback").unwrap();
        assert_eq!(h["x-function-status"], "200");
        assert_eq!(h["x-function-name"], "fn-q");
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["len"], 7);
        got.push((h["x-call-id"].to_str().unwrap().to_string(), j["path"].as_str().unwrap().to_string()));
    }
    got.sort();
    let mut want: Vec<(String, String)> = ids.iter().cloned().zip((0..3).map(|i| format!("/job{i}"))).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(call("POST", &d.url("/async-function/nope"), &[], "").await.status, StatusCode::NOT_FOUND);
    let r = call("POST", &d.url("/async-function/fn-q"), &[("x-callback-url", "ftp://x")], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_comes_back_after_a_restart() {
    let dir = state_dir();
    let d = start(dir.path(), false).await;
    let mut spec = echo("fn-r");
    spec["secrets"] = json!(["tok"]);
    spec["envVars"]["SECRET_NAME"] = json!("tok");
    assert_eq!(post_json(&d.url("/system/secrets"), json!({"name": "tok", "value": "kept"})).await.status, StatusCode::CREATED);
    deploy_ready(&d, spec).await;
    assert_eq!(post_json(&d.url("/system/scale-function/fn-r"), json!({"replicas": 2})).await.status, StatusCode::ACCEPTED);
    wait_status(&d, "fn-r", |s| s["availableReplicas"] == 2).await;
    assert_eq!(call("POST", &d.url("/function/fn-r/before"), &[], "").await.status, StatusCode::OK);
    let created = get(&d.url("/system/function/fn-r")).await.json()["createdAt"].clone();
    d.stop().await;

    let d = start(dir.path(), false).await;
    let s = wait_status(&d, "fn-r", |s| s["availableReplicas"] == 2).await;
    assert_eq!(s["replicas"], 2);
    assert_eq!(s["createdAt"], created);
    assert_eq!(s["envVars"]["GREETING"], "hello");
    assert_eq!(call("POST", &d.url("/function/fn-r"), &[], "").await.json()["secret"], "kept");
    let logs = get(&d.url("/system/logs?name=fn-r")).await.text();
    assert!(logs.contains("request POST /before"), "logs from before the restart are kept");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_the_runtime_report_their_calls() {
    let dir = state_dir();
    let d = start_with(dir.path(), false, true, |_| {}).await;
    deploy_ready(&d, echo("fn-rt")).await;
    for _ in 0..3 {
        assert_eq!(call("POST", &d.url("/function/fn-rt"), &[], "x").await.status, StatusCode::OK);
    }
    let s = get(&d.url("/system/function/fn-rt")).await.json();
    assert_eq!(s["annotations"]["com.shunt.backend"], "shunt");
    let metrics = get(&d.url("/metrics")).await.text();
    let value = |class: &str| -> u64 {
        let series = format!("shunt_function_syscalls_total{{class=\"{class}\",function_name=\"fn-rt.openfaas-fn\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    let (redirected, trapped) = (value("redirected"), value("trapped"));
    let (emulated, passthrough, denied) = (value("emulated"), value("passthrough"), value("denied"));
    assert!(redirected > 100, "python serving requests makes calls: {redirected}");
    assert_eq!(emulated + passthrough + denied, redirected + trapped, "the classes partition the calls");
    d.stop().await;
}
