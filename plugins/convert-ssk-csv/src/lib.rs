//! The `ssk-csv` master-format converter: SSK basic-master CSV ⇄ canonical rows, built from
//! the same layout code as the host's native reader (which stays the test oracle).

const FORMAT_NAME: &str = "ssk-csv";
const FAULT: Option<&str> = None;

include!("glue.rs");
include!("ssk.rs");
