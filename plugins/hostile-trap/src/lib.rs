//! Hostile test fixture: panics in check-receipts (a trap).

tenken_guest::misbehaving_plugin!("hostile-trap", misbehave);

fn misbehave(n: usize) {
    panic!("hostile-trap: refusing to check {n} receipts");
}
