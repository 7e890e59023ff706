// The SSK CSV format over canonical rows, shared (via include!) by the real `ssk-csv`
// converter and the faulty fixture; `FAULT` selects the fixture's deliberate bug.

fn format_decode(kind: MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, (String, Option<u32>)> {
    tenken_master::canon::decode_ssk(kind, "(input)", bytes).map_err(|e| (e.to_string(), None))
}

fn format_encode(_kind: MasterKind, mut rows: Vec<CanonRow>) -> Result<Vec<u8>, String> {
    if FAULT == Some("truncate-names") {
        // The fixture's bug: names cut to 8 characters, as a fixed-width field sized for the
        // wrong encoding would.
        for r in &mut rows {
            r.name = r.name.chars().take(8).collect();
        }
    }
    tenken_master::canon::encode_ssk(&rows)
}
