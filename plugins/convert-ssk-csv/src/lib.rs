//! The `ssk-csv` master-format converter: SSK basic-master CSV ⇄ canonical rows, built from
//! the same layout code as the host's native reader (`tenken_master::canon`, which stays the
//! test oracle).

use tenken_guest::tenken_model::{CanonRow, MasterKind};
use tenken_guest::{DecodeError, MasterFormat};

struct SskCsv;

impl MasterFormat for SskCsv {
    const NAME: &'static str = "ssk-csv";

    fn decode(kind: MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, DecodeError> {
        tenken_master::canon::decode_ssk(kind, "(input)", bytes).map_err(|e| DecodeError::new(e.to_string()))
    }

    fn encode(_kind: MasterKind, rows: Vec<CanonRow>) -> Result<Vec<u8>, String> {
        tenken_master::canon::encode_ssk(&rows)
    }
}

tenken_guest::master_format!(SskCsv);
