//! Hostile test fixture: unbounded recursion (the wasm stack limit must stop it).

tenken_guest::misbehaving_plugin!("hostile-recursion", misbehave);

fn misbehave(n: usize) {
    std::hint::black_box(deep(n as u64 + 1));
}

/// Recursion whose frames live on the wasm stack (scalars only, no shadow-stack arrays), so
/// it is the engine's `max_wasm_stack` that stops it.
fn deep(x: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    deep(std::hint::black_box(x.wrapping_add(1))).wrapping_add(std::hint::black_box(x))
}
