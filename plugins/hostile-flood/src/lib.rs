//! Hostile test fixture: floods stdout (the bounded output pipe must stop it).

tenken_guest::misbehaving_plugin!("hostile-flood", misbehave);

fn misbehave(n: usize) {
    loop {
        println!(
            "hostile-flood: {n} receipts, and a very long line of noise to fill the pipe quickly ................................."
        );
    }
}
