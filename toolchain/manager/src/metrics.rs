//! `/metrics`: Prometheus text format, with the OpenFaaS gateway's metric
//! names (so that existing dashboards work) and shunt's own.
//!
//! Gateway names (label `function_name` is `name.namespace`, as the OpenFaaS
//! gateway writes it):
//! - `gateway_function_invocation_started{function_name}` — counter
//! - `gateway_function_invocation_total{function_name,code}` — counter
//! - `gateway_functions_seconds{function_name,code}` — histogram, request
//!   received → response body sent, seconds
//! - `gateway_service_count{function_name}` — gauge, replicas
//!
//! shunt's own:
//! - `shunt_function_syscalls_total{function_name,class}` — counter, the
//!   instances' system calls by class (redirected, emulated, passthrough,
//!   trapped, denied), read live from their stats segments at scrape time
//! - `shunt_function_available_replicas{function_name}` — gauge
//! - `shunt_function_restarts_total{function_name}` — counter
//! - `shunt_function_cold_starts_total{function_name}` and
//!   `shunt_function_cold_start_seconds{function_name}` — a request that
//!   found no replica and waited for one: count and wait
//! - `shunt_instance_start_seconds{function_name}` — histogram, launch →
//!   first successful health check, every instance
//! - `shunt_instance_start_part_seconds{function_name,part}` — histogram,
//!   the same start part by part ([`START_PARTS`]), so that the slow part
//!   shows
//! - `shunt_async_queue_length` — gauge
//! - `shunt_daemon_syscalls_total{class}` — counter, the daemon's own calls
//!   when it runs on the runtime
//! - `shunt_function_transport_total{function_name,counter}` and
//!   `shunt_daemon_transport_total{counter}` — counters, the bypass
//!   transport's `shm_connections`, `kernel_connections` and `shm_bytes`
//!   (loopback connections carried by shared-memory rings, left to kernel
//!   TCP, and bytes through the rings) of the instances and of the daemon

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::instances::backend::Calls;

pub const CLASSES: [&str; 5] = ["redirected", "emulated", "passthrough", "trapped", "denied"];

/// The parts of an instance's start, in order (`part` label of
/// `shunt_instance_start_part_seconds`): waiting for a launch thread; the
/// supervisor's prepare (instance directory, cgroups, what to exec),
/// fork (until the reaper reports the program's pid) and exec (until the
/// program's `execve` succeeded), or `launch` for a backend without
/// parts; handover (back to the function's controller); listen (the
/// health probe's start to the instance's first HTTP answer); health (to
/// its first healthy answer).
pub const START_PARTS: [&str; 8] = ["queue", "prepare", "fork", "exec", "launch", "handover", "listen", "health"];

/// The transport counters, by their stats names.
pub const TRANSPORT: [&str; 3] = ["shm_connections", "kernel_connections", "shm_bytes"];

fn transport_values(c: &Calls) -> [u64; 3] {
    [c.shm_connections, c.kernel_connections, c.shm_bytes]
}

/// Brings each counter of `vec` (labels `prefix` + the name) up to its value.
fn raise(vec: &IntCounterVec, prefix: &[&str], names: &[&str], values: &[u64]) {
    for (name, &v) in names.iter().zip(values) {
        let mut labels: Vec<&str> = prefix.to_vec();
        labels.push(name);
        let c = vec.with_label_values(&labels);
        let have = c.get();
        if v > have {
            c.inc_by(v - have);
        }
    }
}

fn class_values(c: &Calls) -> [u64; 5] {
    [c.redirected, c.emulated, c.passthrough, c.trapped, c.denied]
}

pub struct Metrics {
    registry: Registry,
    pub started: IntCounterVec,
    pub total: IntCounterVec,
    pub seconds: HistogramVec,
    pub service_count: IntGaugeVec,
    pub available: IntGaugeVec,
    pub syscalls: IntCounterVec,
    pub restarts: IntCounterVec,
    pub cold_starts: IntCounterVec,
    pub cold_start_seconds: HistogramVec,
    pub instance_start_seconds: HistogramVec,
    pub instance_start_part_seconds: HistogramVec,
    pub async_queue: IntGauge,
    pub daemon_syscalls: IntCounterVec,
    pub transport: IntCounterVec,
    pub daemon_transport: IntCounterVec,
    pub async_callbacks_failed: IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails for malformed names or duplicate registration, which are
    // fixed in this file.
    r.expect("metric definitions are valid")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let started = must(IntCounterVec::new(
            Opts::new("gateway_function_invocation_started", "Invocations started, by function"),
            &["function_name"],
        ));
        let total = must(IntCounterVec::new(
            Opts::new("gateway_function_invocation_total", "Invocations completed, by function and status code"),
            &["function_name", "code"],
        ));
        let seconds = must(HistogramVec::new(
            HistogramOpts::new("gateway_functions_seconds", "Invocation time at the gateway: request received to response sent")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["function_name", "code"],
        ));
        let service_count =
            must(IntGaugeVec::new(Opts::new("gateway_service_count", "Replicas wanted, by function"), &["function_name"]));
        let available = must(IntGaugeVec::new(
            Opts::new("shunt_function_available_replicas", "Replicas that passed their health check"),
            &["function_name"],
        ));
        let syscalls = must(IntCounterVec::new(
            Opts::new("shunt_function_syscalls_total", "System calls of the function's instances, by class"),
            &["function_name", "class"],
        ));
        let restarts =
            must(IntCounterVec::new(Opts::new("shunt_function_restarts_total", "Instances restarted after a crash"), &["function_name"]));
        let cold_starts = must(IntCounterVec::new(
            Opts::new("shunt_function_cold_starts_total", "Requests that found no replica and waited for one to start"),
            &["function_name"],
        ));
        let cold_start_seconds = must(HistogramVec::new(
            HistogramOpts::new("shunt_function_cold_start_seconds", "How long a request waited for a replica to start")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["function_name"],
        ));
        let instance_start_seconds = must(HistogramVec::new(
            HistogramOpts::new("shunt_instance_start_seconds", "Instance launch to its first successful health check")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["function_name"],
        ));
        let instance_start_part_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "shunt_instance_start_part_seconds",
                "Where an instance's start went, part by part: queue (waiting for a launch thread), the backend's parts \
                 (prepare, fork, exec for a supervised instance), handover (back to the function's controller), \
                 listen (to the instance's first HTTP answer), health (to its first healthy answer)",
            )
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["function_name", "part"],
        ));
        let async_queue = must(IntGauge::new("shunt_async_queue_length", "Async invocations waiting to run"));
        let async_callbacks_failed =
            must(IntCounter::new("shunt_async_callbacks_failed_total", "Async results whose callback could not be delivered"));
        let daemon_syscalls = must(IntCounterVec::new(
            Opts::new("shunt_daemon_syscalls_total", "System calls of the daemon itself, by class (on the runtime)"),
            &["class"],
        ));
        let transport = must(IntCounterVec::new(
            Opts::new("shunt_function_transport_total", "The bypass transport of the function's instances: connections on rings, on kernel TCP, bytes through rings"),
            &["function_name", "counter"],
        ));
        let daemon_transport = must(IntCounterVec::new(
            Opts::new("shunt_daemon_transport_total", "The bypass transport of the daemon itself: connections on rings, on kernel TCP, bytes through rings"),
            &["counter"],
        ));
        for c in [&started, &total, &syscalls, &restarts, &cold_starts, &daemon_syscalls, &transport, &daemon_transport] {
            must(registry.register(Box::new((*c).clone())));
        }
        for h in [&seconds, &cold_start_seconds, &instance_start_seconds, &instance_start_part_seconds] {
            must(registry.register(Box::new((*h).clone())));
        }
        for g in [&service_count, &available] {
            must(registry.register(Box::new((*g).clone())));
        }
        must(registry.register(Box::new(async_queue.clone())));
        must(registry.register(Box::new(async_callbacks_failed.clone())));
        Metrics {
            registry,
            started,
            total,
            seconds,
            service_count,
            available,
            syscalls,
            restarts,
            cold_starts,
            cold_start_seconds,
            instance_start_seconds,
            instance_start_part_seconds,
            async_queue,
            daemon_syscalls,
            transport,
            daemon_transport,
            async_callbacks_failed,
        }
    }

    /// Brings a function's syscall counters up to `calls` (a running total:
    /// they only grow).
    pub fn set_calls(&self, function: &str, calls: &Calls) {
        for (class, v) in CLASSES.iter().zip(class_values(calls)) {
            let c = self.syscalls.with_label_values(&[function, class]);
            let have = c.get();
            if v > have {
                c.inc_by(v - have);
            }
        }
        if transport_values(calls) != [0; 3] {
            raise(&self.transport, &[function], &TRANSPORT, &transport_values(calls));
        }
    }

    pub fn set_daemon_calls(&self, calls: &Calls) {
        for (class, v) in CLASSES.iter().zip(class_values(calls)) {
            let c = self.daemon_syscalls.with_label_values(&[class]);
            let have = c.get();
            if v > have {
                c.inc_by(v - have);
            }
        }
        if transport_values(calls) != [0; 3] {
            raise(&self.daemon_transport, &[], &TRANSPORT, &transport_values(calls));
        }
    }

    /// Forgets a removed function's series.
    pub fn forget(&self, function: &str) {
        let _ = self.started.remove_label_values(&[function]);
        let _ = self.service_count.remove_label_values(&[function]);
        let _ = self.available.remove_label_values(&[function]);
        let _ = self.restarts.remove_label_values(&[function]);
        let _ = self.cold_starts.remove_label_values(&[function]);
        let _ = self.cold_start_seconds.remove_label_values(&[function]);
        let _ = self.instance_start_seconds.remove_label_values(&[function]);
        for part in START_PARTS {
            let _ = self.instance_start_part_seconds.remove_label_values(&[function, part]);
        }
        for class in CLASSES {
            let _ = self.syscalls.remove_label_values(&[function, class]);
        }
        for name in TRANSPORT {
            let _ = self.transport.remove_label_values(&[function, name]);
        }
        // Series with a `code` label: remove those this function has.
        for mf in self.registry.gather() {
            if mf.name() != "gateway_function_invocation_total" && mf.name() != "gateway_functions_seconds" {
                continue;
            }
            for m in mf.get_metric() {
                let labels = m.get_label();
                let name = labels.iter().find(|l| l.name() == "function_name").map(|l| l.value());
                let code = labels.iter().find(|l| l.name() == "code").map(|l| l.value());
                if let (Some(n), Some(code)) = (name, code) {
                    if n == function {
                        let _ = self.total.remove_label_values(&[function, code]);
                        let _ = self.seconds.remove_label_values(&[function, code]);
                    }
                }
            }
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# cannot encode metrics: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names_and_monotonic_calls() {
        let m = Metrics::new();
        m.started.with_label_values(&["aes.openfaas-fn"]).inc();
        m.total.with_label_values(&["aes.openfaas-fn", "200"]).inc();
        m.seconds.with_label_values(&["aes.openfaas-fn", "200"]).observe(0.001);
        m.service_count.with_label_values(&["aes.openfaas-fn"]).set(2);
        m.set_calls("aes.openfaas-fn", &Calls { redirected: 10, emulated: 4, passthrough: 6, ..Default::default() });
        m.set_calls("aes.openfaas-fn", &Calls { redirected: 8, emulated: 4, passthrough: 4, ..Default::default() });
        let text = m.render();
        for want in [
            "gateway_function_invocation_started{function_name=\"aes.openfaas-fn\"} 1",
            "gateway_function_invocation_total{code=\"200\",function_name=\"aes.openfaas-fn\"} 1",
            "gateway_functions_seconds_count{code=\"200\",function_name=\"aes.openfaas-fn\"} 1",
            "gateway_service_count{function_name=\"aes.openfaas-fn\"} 2",
            "shunt_function_syscalls_total{class=\"redirected\",function_name=\"aes.openfaas-fn\"} 10",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        m.forget("aes.openfaas-fn");
        assert!(!m.render().contains("aes.openfaas-fn"));
    }
}
