//! Test fixture: the ssk-csv converter with a deliberate bug in `encode` (names truncated to
//! 8 characters). The round-trip proof must block any conversion through it.

use tenken_guest::tenken_model::{CanonRow, MasterKind};
use tenken_guest::{DecodeError, MasterFormat};

struct SskCsvFaulty;

impl MasterFormat for SskCsvFaulty {
    const NAME: &'static str = "ssk-csv-faulty";

    fn decode(kind: MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, DecodeError> {
        tenken_master::canon::decode_ssk(kind, "(input)", bytes).map_err(|e| DecodeError::new(e.to_string()))
    }

    fn encode(_kind: MasterKind, mut rows: Vec<CanonRow>) -> Result<Vec<u8>, String> {
        // The bug: names cut to 8 characters, as a fixed-width field sized for the wrong
        // encoding would.
        for r in &mut rows {
            r.name = r.name.chars().take(8).collect();
        }
        tenken_master::canon::encode_ssk(&rows)
    }
}

tenken_guest::master_format!(SskCsvFaulty);
