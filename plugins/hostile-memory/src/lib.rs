//! Hostile test fixture: allocates until memory runs out (the store limit must stop it).

tenken_guest::misbehaving_plugin!("hostile-memory", misbehave);

fn misbehave(n: usize) {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![n as u8; 16 << 20];
        block[0] = 1;
        hoard.push(std::hint::black_box(block));
    }
}
