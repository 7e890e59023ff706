//! The regression corpus a payer starts with: claim files of the project's own making,
//! generated from the payer's masters, so a new deployment can validate its first plugin
//! before staff have added real cases. (The expectations are what the release set in force
//! finds in them; the server computes those with its live table.)

use tenken_model::Payer;

/// Files seeded per payer, and their size: small enough to re-check on every validation.
const SEED_RECEIPTS: usize = 120;
const SEED_INSTITUTIONS: usize = 2;
/// Fixed: every deployment seeds the same files from the same masters.
const SEED: u64 = 2022;
/// Share of receipts missing their 傷病名, so the seeds carry error findings to compare.
const SEED_MISSING_DIAGNOSIS: f64 = 0.05;

/// One generated case: its name in the corpus and its bytes.
#[derive(Debug, Clone)]
pub struct SeedCase {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The seed cases of `payer`, consistent with `masters`. Real masters the generator cannot
/// use are an error (staff then add cases through the API).
pub fn seed_cases(payer: Payer, masters: &tenken_master::MasterSet) -> Result<Vec<SeedCase>, String> {
    let opts = tenken_gen::GenOptions {
        receipts: SEED_RECEIPTS,
        institutions: SEED_INSTITUTIONS,
        seed: SEED,
        payer: Some(payer),
        inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, SEED_MISSING_DIAGNOSIS)],
        ..Default::default()
    };
    let files = tenken_gen::generate(&opts, masters).map_err(|e| e.to_string())?;
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(i, f)| SeedCase { name: format!("generated-{}", i + 1), bytes: f.bytes })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are the same files on every deployment with the same masters, for the
    /// payer asked, and carry the injected errors validation compares on.
    #[test]
    fn seeds_are_deterministic_per_payer_and_carry_findings() {
        let masters = tenken_master::demo::demo_master_set();
        let a = seed_cases(Payer::Kokuho, &masters).unwrap();
        let b = seed_cases(Payer::Kokuho, &masters).unwrap();
        assert_eq!(a.len(), SEED_INSTITUTIONS);
        assert_eq!(
            a.iter().map(|c| (&c.name, &c.bytes)).collect::<Vec<_>>(),
            b.iter().map(|c| (&c.name, &c.bytes)).collect::<Vec<_>>()
        );
        let limits = tenken_limits::Limits::default();
        for c in &a {
            let claim = tenken_claim::parse(&c.bytes, &limits);
            assert_eq!(claim.file.header.as_ref().map(|h| h.payer), Some(Some(Payer::Kokuho)), "{}", c.name);
            assert!(!claim.receipts.is_empty(), "{}", c.name);
        }
    }
}
