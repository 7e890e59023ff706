//! Parser tests: the real corpus file, hostile inputs, and a mutation sweep that must never panic.

use tenken_claim::parse;
use tenken_limits::Limits;
use tenken_model::{Claim, LineKind, YearMonth};

fn corpus_file() -> Option<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/receipts/RECEIPTC_GAIRAI_SAMPLE.UKE");
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(_) if std::env::var("TENKEN_REQUIRE_CORPUS").as_deref() == Ok("1") => panic!("TENKEN_REQUIRE_CORPUS=1 but {path} is missing"),
        Err(_) => {
            eprintln!("note: {path} missing; corpus test skipped");
            None
        }
    }
}

/// A small valid file of our own making (UTF-8 here, encoded to CP932 + CRLF).
const SAMPLE: &str = "IR,1,13,1,1234567,,テスト診療所,202111,00,03-0000-0000
RE,1,1112,202110,テスト　タロウ,1,19800101,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,
HO,06139999,,12345,1,370,,,,,,,,
SY,8833421,20211001,1,,,01,
SI,11,1,111000110,,288,1,,,,,,,1,,,,,,,,,,,,,,,,,,,,,,,,,,,,,
SI,,1,112007410,,82,1,,,,,,,,1,,,,,,,,,,,,,,,,,,,,,,,,,,,,
IY,21,1,620000001,2,10,1,,,,,,,1,,,,,,,,,,,,,,,,,,,,,,,,,,,,,
CO,,1,810000001,テスト
RE,2,1112,202110,テスト　ハナコ,2,19900505,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,
HO,06139999,,12346,1,288,,,,,,,,
GO,2,658,99
";

fn cp932(s: &str, crlf: bool) -> Vec<u8> {
    let text = if crlf { s.replace('\n', "\r\n") } else { s.to_string() };
    encoding_rs::SHIFT_JIS.encode(&text).0.into_owned()
}

fn rules(c: &Claim) -> Vec<&str> {
    c.parse_findings.iter().map(|f| f.rule.as_str()).collect()
}

#[test]
fn corpus_file_parses_cleanly() {
    let Some(bytes) = corpus_file() else { return };
    let c = parse(&bytes, &Limits::default());
    assert!(c.parse_findings.is_empty(), "{:#?}", c.parse_findings);
    assert_eq!(c.receipts.len(), 75);
    assert_eq!(c.file.line_count, 636);
    let go = c.file.trailer.as_ref().unwrap();
    assert_eq!((go.total_count, go.total_points, go.volume.as_str()), (Some(140), Some(86392), "99"));
    assert_eq!(c.receipts.iter().filter(|r| r.insurance.is_some()).count(), 69);
    assert_eq!(c.receipts.iter().map(|r| r.public_expenses.len()).sum::<usize>(), 71);
    let with_sy: Vec<u32> = c.receipts.iter().filter(|r| !r.diagnoses.is_empty()).filter_map(|r| r.number).collect();
    assert_eq!(with_sy, vec![1, 2, 3, 38, 39]);
    assert!(c.receipts.iter().all(|r| r.service_month == YearMonth::new(2021, 10)));
    assert_eq!(c.file.header.as_ref().unwrap().billing_month, YearMonth::new(2021, 11));
    // Every line of a receipt is one of its raw records: RE..next RE, 636 = IR + GO + receipts.
    assert_eq!(c.receipts.iter().map(|r| r.records.len()).sum::<usize>() + 2, 636);
    // 診療識別 carried: every SI/IY/TO line has one.
    assert!(c.receipts.iter().flat_map(|r| &r.lines).all(|l| !l.category.is_empty()));
    // Day counts sum to 回数 on every line (a corpus fact).
    assert!(c.receipts.iter().flat_map(|r| &r.lines).all(|l| Some(l.day_total() as u32) == l.count));
}

#[test]
fn sample_views_and_carry_over() {
    for crlf in [true, false] {
        let mut bytes = cp932(SAMPLE, crlf);
        bytes.push(0x1a);
        let c = parse(&bytes, &Limits::default());
        assert!(c.parse_findings.is_empty(), "{:#?}", c.parse_findings);
        assert_eq!(c.receipts.len(), 2);
        let r = &c.receipts[0];
        assert_eq!(r.number, Some(1));
        assert_eq!(r.insurance.as_ref().unwrap().insurer_number, "06139999");
        assert_eq!(r.diagnoses[0].code, "8833421");
        assert!(r.diagnoses[0].primary);
        assert_eq!(r.lines.len(), 3);
        assert_eq!((r.lines[1].category.as_str(), r.lines[1].category_carried), ("11", true));
        assert_eq!(r.lines[2].kind, LineKind::Drug);
        assert_eq!(r.lines[0].days[0], 1);
        assert_eq!(r.lines[1].days[1], 1);
        assert_eq!(r.comments[0].category, "21");
        assert_eq!(r.records.len(), 7);
        assert_eq!(c.file.receipts[0].main_points, Some(370));
        assert_eq!(c.file.line_count, 11);
    }
}

#[test]
fn wareki_file() {
    let old = SAMPLE.replace("202111", "50311").replace("202110", "50310").replace("19800101", "3550101");
    let c = parse(&cp932(&old, true), &Limits::default());
    assert!(c.parse_findings.is_empty());
    assert_eq!(c.receipts[0].service_month, YearMonth::new(2021, 10));
    assert_eq!(c.file.header.as_ref().unwrap().billing_month, YearMonth::new(2021, 11));
    assert_eq!(c.receipts[0].birth_date.unwrap().year, 1980);
}

#[test]
fn hostile_inputs_become_findings() {
    let l = Limits::default();
    assert_eq!(rules(&parse(b"", &l)), ["format.file.empty"]);
    assert_eq!(rules(&parse(b"\r\n\x1a", &l)), ["format.file.empty"]);
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let c = parse(&garbage, &l);
    assert!(rules(&c).contains(&"format.ir.missing") && rules(&c).contains(&"format.go.missing"));
    let c = parse(&[0xff; 3000], &l);
    assert!(rules(&c).contains(&"format.encoding"));
    let c = parse(&[0u8; 100], &l);
    assert!(rules(&c).contains(&"format.control-character"));

    let no_ir = SAMPLE.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(rules(&parse(&cp932(&no_ir, true), &l)).contains(&"format.ir.missing"));
    let no_go = SAMPLE.lines().filter(|x| !x.starts_with("GO")).collect::<Vec<_>>().join("\n");
    assert_eq!(rules(&parse(&cp932(&no_go, true), &l)), ["format.go.missing"]);
    let before_re = SAMPLE.replacen("RE,1,", "SY,0000999,20211001,1,,,,\nRE,1,", 1);
    let c = parse(&cp932(&before_re, true), &l);
    assert_eq!(rules(&c), ["format.record.outside-receipt"]);
    assert_eq!(c.parse_findings[0].line, Some(2));
    let after_go = format!("{SAMPLE}SI,,1,111000110,,288,1\n");
    assert_eq!(rules(&parse(&cp932(&after_go, true), &l)), ["format.go.not-last"]);
    let ir_late = SAMPLE.lines().skip(1).chain(SAMPLE.lines().take(1)).collect::<Vec<_>>().join("\n");
    assert!(rules(&parse(&cp932(&ir_late, true), &l)).contains(&"format.ir.not-first"));
    let eof_mid = SAMPLE.replacen("HO,", "H\x1aO,", 1);
    assert!(rules(&parse(&cp932(&eof_mid, true), &l)).contains(&"format.control-character"));
    let blank = SAMPLE.replacen("HO,", "\nHO,", 1);
    assert_eq!(rules(&parse(&cp932(&blank, true), &l)), ["format.line.empty"]);

    // Unknown record ids are kept, in the receipt they appear in.
    let unknown = SAMPLE.replacen("SY,", "ZZ,1,2,3\nSY,", 1);
    let c = parse(&cp932(&unknown, true), &l);
    assert!(c.parse_findings.is_empty());
    assert!(c.receipts[0].records.iter().any(|r| r.id() == "ZZ" && r.fields.len() == 4));

    // Over-long line, too many fields, size and record limits.
    let small = Limits { claim_line_bytes_max: 60, claim_fields_per_record_max: 40, ..Limits::default() };
    let c = parse(&cp932(SAMPLE, true), &small);
    assert!(rules(&c).contains(&"format.line.too-long"));
    let tiny = Limits { claim_bytes_max: 10, ..Limits::default() };
    let c = parse(&cp932(SAMPLE, true), &tiny);
    assert_eq!(rules(&c), ["format.file.too-large"]);
    assert!(c.receipts.is_empty());
    let few = Limits { claim_records_max: 3, ..Limits::default() };
    assert!(rules(&parse(&cp932(SAMPLE, true), &few)).contains(&"format.records.too-many"));
    let fields = Limits { claim_fields_per_record_max: 20, ..Limits::default() };
    assert!(rules(&parse(&cp932(SAMPLE, true), &fields)).contains(&"format.fields.too-many"));
    let capped = Limits { claim_parse_findings_max: 2, ..Limits::default() };
    let c = parse(&[0u8; 50].repeat(1).iter().chain(b"\n\x00\n\x00\n\x00\n").copied().collect::<Vec<_>>(), &capped);
    assert_eq!(c.parse_findings.last().unwrap().rule, "format.findings.truncated");
    assert_eq!(c.parse_findings.len(), 3);
}

#[test]
fn mutations_never_panic() {
    let base = corpus_file().unwrap_or_else(|| cp932(SAMPLE, true));
    let limits = Limits { claim_line_bytes_max: 512, ..Limits::default() };
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..(next() % 8 + 1) {
            let i = (next() as usize) % b.len().max(1);
            match next() % 4 {
                0 => b[i] = next() as u8,
                1 => {
                    b.insert(i, [b',', b'\n', b'\r', 0x1a, 0x82][(next() % 5) as usize]);
                }
                2 => {
                    b.remove(i);
                }
                _ => b.truncate(i),
            }
            if b.is_empty() {
                break;
            }
        }
        let c = parse(&b, &limits);
        assert!(c.file.line_count as usize <= b.len() + 1);
    }
}
