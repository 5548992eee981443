//! One integration-test binary: the simulator on 127.0.0.1:0, real HTTP, a
//! real SQLite file and real files on disk.
mod additions;
mod claims;
mod cli;
mod common;
mod config_files;
mod daemon;
mod hardening;
mod interop;
mod packaging;
mod pull;
mod status;
mod twoway;
