//! `shunt daemon`: the OpenFaaS gateway and faas-provider API in one
//! process, and the manager of the function instances behind them — the
//! Junctiond report's junctiond, with faasd's API.
//!
//! ```text
//! client ─HTTP─▶ server (routes, auth) ─▶ proxy (request path: table lookup,
//!                  │                        least-outstanding pick, forward)
//!                  ├─ api (faas-provider /system/*: functions, scale,
//!                  │       secrets, logs, info) ─▶ state (redb, secret files)
//!                  └─ asyncq (/async-function, durable queue, callbacks)
//! instances: one controller per function ─▶ backend (runtime / native)
//!            health probes, restarts with backoff, scale from zero,
//!            idler and autoscaler; logs and metrics fed from its events
//! ```
//!
//! Layers, lowest first: `names`, `model` (JSON shapes), `state`, `logs`,
//! `metrics`, `images` and `instances::backend` (the interfaces to what
//! stores images and runs instances), `table` (the in-memory replica
//! table), `instances` (controllers), `proxy`, `asyncq`, `api`, `server`,
//! `daemon`.

pub mod api;
pub mod asyncq;
pub mod cli;
pub mod daemon;
pub mod images;
pub mod instances;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod names;
pub mod proxy;
pub mod server;
pub mod shared;
pub mod state;
pub mod table;

pub use shared::Config;
