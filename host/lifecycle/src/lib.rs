//! The lifecycle domain that the server and the CLI share, so each is defined once: what
//! "the same finding" is when two runs are compared ([`delta`]), and the round-trip proof a
//! master conversion must pass before it is used ([`proof`]).
//!
//! Why a crate of its own: the server (validation, impact check, `convert-for`, replay) and
//! the CLI (`tenken master impact`, `bench-masters`) each carried copies of these, with
//! three different "same finding" keys. Nothing here knows HTTP or a store.

#![forbid(unsafe_code)]

pub mod delta;
pub mod proof;

pub use delta::{Delta, delta};
pub use proof::{Proof, ProofError, round_trip, round_trip_through};
