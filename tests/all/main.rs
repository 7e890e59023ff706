//! The integration test suite (one binary, as wasmtime's `tests/all`): real parser, real
//! masters, real wasm plugins in the real runtime, and the real `tenken` binary.

mod cli;
mod common;
mod contract;
mod corpus;
mod differential;
mod fixtures;
mod hostile;
mod crash;
mod server;
mod server_util;
mod lifecycle;
mod languages;
mod converter;
mod masters;
