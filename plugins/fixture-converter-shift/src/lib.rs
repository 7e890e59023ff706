//! Test fixture: the ssk-csv converter with a deliberate bug in `encode` (names truncated to
//! 8 characters). The round-trip proof must block any conversion through it.

const FORMAT_NAME: &str = "ssk-csv-faulty";
const FAULT: Option<&str> = Some("truncate-names");

include!("../../convert-ssk-csv/src/glue.rs");
include!("../../convert-ssk-csv/src/ssk.rs");
