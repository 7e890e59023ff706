//! How a submission is split into chunks: the geometry both the store (claim costs) and the
//! workers (receipt ranges) must agree on, so it lives in one place.

/// How a submission of `receipts` receipts is split: chunk 0 is the file-level work, chunks
/// 1.. cover `chunk_receipts` receipts each (the last one is open-ended, so a parser that
/// finds more receipts than the acceptance scan counted still covers them all).
pub fn chunk_count(receipts: u32, chunk_receipts: u32) -> u32 {
    1 + receipts.div_ceil(chunk_receipts.max(1)).max(1)
}

/// The receipt indices chunk `index` (≥ 1) covers.
pub fn chunk_range(index: u32, chunks: u32, chunk_receipts: u32) -> std::ops::Range<usize> {
    let b = chunk_receipts.max(1) as usize;
    let start = (index as usize).saturating_sub(1) * b;
    let end = if index + 1 >= chunks { usize::MAX } else { start + b };
    start..end
}

/// A chunk's cost in the fair order: the receipts it covers (1 for the file-level chunk).
pub fn chunk_cost(index: u32, receipts: u32, chunks: u32, chunk_receipts: u32) -> u32 {
    if index == 0 {
        return 1;
    }
    let r = chunk_range(index, chunks, chunk_receipts);
    (receipts as usize).min(r.end).saturating_sub(r.start).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_receipt() {
        assert_eq!(chunk_count(0, 256), 2);
        assert_eq!(chunk_count(256, 256), 2);
        assert_eq!(chunk_count(257, 256), 3);
        assert_eq!(chunk_range(1, 3, 256), 0..256);
        assert_eq!(chunk_range(2, 3, 256), 256..usize::MAX);
        assert_eq!(chunk_cost(2, 257, 3, 256), 1);
        assert_eq!(chunk_cost(1, 257, 3, 256), 256);
        assert_eq!(chunk_cost(0, 257, 3, 256), 1);
    }
}
