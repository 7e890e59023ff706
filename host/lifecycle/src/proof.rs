//! The round-trip proof of a master conversion: rows encoded by the target format, decoded
//! again, and compared field by field with the rows they came from. A conversion is used
//! only if this reproduces every field (ARCHITECTURE.md, Invariants).

use std::fmt::Display;
use std::time::{Duration, Instant};

use tenken_master::canon::{self, FieldDiff};
use tenken_model::{CanonRow, MasterKind};
use tenken_runtime::Converter;

/// What a proof found. `diffs` empty = proven.
#[derive(Debug)]
pub struct Proof {
    /// The rows in the target format.
    pub encoded: Vec<u8>,
    /// The fields that came back different (at most the `max_diffs` asked for, but every
    /// field of every row was compared).
    pub diffs: Vec<FieldDiff>,
    /// Time spent encoding, decoding again and comparing (for `bench-masters`).
    pub timings: [Duration; 3],
}

impl Proof {
    pub fn proven(&self) -> bool {
        self.diffs.is_empty()
    }

    /// The differences in one line: `"code field: expected …, got …; …"`.
    pub fn describe(&self) -> String {
        self.diffs
            .iter()
            .map(|d| format!("{} {}: expected {:?}, got {:?}", d.code, d.field, d.expected, d.got))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A proof that could not be carried out: the target could not encode the rows, or could
/// not decode its own output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("encoding with {target} failed: {message}; the target format cannot hold these rows")]
    Encode { target: String, message: String },
    #[error("decoding the output of {target} again failed: {message}; the converter does not read what it writes")]
    Decode { target: String, message: String },
}

/// The proof with any encoder and decoder (`target` names them in errors): the bundled
/// converter plugins use [`round_trip_through`]; the native oracle passes `canon`'s codec.
pub fn round_trip<E: Display>(
    target: &str,
    rows: &[CanonRow],
    encode: impl FnOnce(&[CanonRow]) -> Result<Vec<u8>, E>,
    decode: impl FnOnce(&[u8]) -> Result<Vec<CanonRow>, E>,
    max_diffs: usize,
) -> Result<Proof, ProofError> {
    let t = Instant::now();
    let encoded = encode(rows).map_err(|e| ProofError::Encode { target: target.into(), message: e.to_string() })?;
    let t_enc = t.elapsed();
    let t = Instant::now();
    let back = decode(&encoded).map_err(|e| ProofError::Decode { target: target.into(), message: e.to_string() })?;
    let t_dec = t.elapsed();
    let t = Instant::now();
    let diffs = canon::compare(rows, &back, max_diffs);
    Ok(Proof { encoded, diffs, timings: [t_enc, t_dec, t.elapsed()] })
}

/// The proof through a converter plugin.
pub fn round_trip_through(
    target: &Converter,
    kind: MasterKind,
    rows: &[CanonRow],
    max_diffs: usize,
) -> Result<Proof, ProofError> {
    round_trip(&target.info.name, rows, |r| target.encode(kind, r), |b| target.decode(kind, b), max_diffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(kind: MasterKind) -> Vec<CanonRow> {
        let dir = std::env::temp_dir().join(format!("tenken-proof-{}", std::process::id()));
        tenken_master::demo::write_demo_masters(&dir).unwrap();
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(kind.letter()))
            .unwrap();
        let name = file.file_name().to_string_lossy().into_owned();
        let rows = canon::decode_ssk(kind, &name, &std::fs::read(file.path()).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        rows
    }

    #[test]
    fn the_native_codec_proves_the_demo_masters_and_a_lossy_one_does_not() {
        let kind = MasterKind::ALL[0];
        let rows = rows(kind);
        assert!(!rows.is_empty());
        let name = format!("{}.csv", kind.letter());
        let ok = round_trip(
            "ssk-csv",
            &rows,
            canon::encode_ssk,
            |b| canon::decode_ssk(kind, &name, b).map_err(|e| e.to_string()),
            5,
        )
        .unwrap();
        assert!(ok.proven(), "{}", ok.describe());
        // An encoder that drops the last row: the proof names the difference.
        let lossy = round_trip(
            "lossy",
            &rows,
            |r| canon::encode_ssk(&r[..r.len() - 1]),
            |b| canon::decode_ssk(kind, &name, b).map_err(|e| e.to_string()),
            5,
        )
        .unwrap();
        assert!(!lossy.proven());
        // A decoder that cannot read the output: an error, not a pass.
        let err = round_trip("broken", &rows, canon::encode_ssk, |_| Err("garbled".to_string()), 5).unwrap_err();
        assert!(matches!(err, ProofError::Decode { .. }), "{err}");
    }
}
