//! The integration test suite (one binary, as wasmtime's `tests/all`): real parser, real
//! masters, real wasm plugins in the real runtime, and the real `tenken` binary.

mod cli;
mod cluster;
mod common;
mod contract;
mod converter;
mod corpus;
mod crash;
mod differential;
mod findings_cap;
mod fixtures;
mod hostile;
mod languages;
mod lifecycle;
mod master_formats;
mod masters;
mod may2022;
mod migrate;
mod registry;
mod server;
mod server_util;
