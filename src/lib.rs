//! meetsync: keeps web meeting platforms and a local calendar store in step.
//!
//! Layers, from the bottom: `model`; `ics` (byte-exact scanner and property
//! editor), `reconcile` (the pure planner) and `config`; `store` (vdir),
//! `state` (SQLite, claims), `http` + `provider` (platform clients); `cycle`
//! and `twoway` (one sync job); `daemon`, `app`/`demo` (commands). `sim` is the
//! platform simulator used by tests, benchmarks and the demo; the sync code
//! never uses it. `ARCHITECTURE.md` is the map.
pub mod app;
pub mod cli;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod demo;
pub mod http;
pub mod ics;
pub mod manpages;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod reconcile;
pub mod report;
pub mod sim;
pub mod state;
pub mod store;
pub mod twoway;
