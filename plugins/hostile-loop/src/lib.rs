//! Hostile test fixture: loops forever in check-receipts (the epoch deadline must stop it).

tenken_guest::misbehaving_plugin!("hostile-loop", misbehave);

fn misbehave(n: usize) {
    let mut x = n as u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
