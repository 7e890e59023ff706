//! One definition of "the same finding", and the difference between two lists of findings
//! counted as multisets: what the master impact check, plugin validation, `tenken replay`
//! and `tenken master impact` all compare with.

use std::collections::BTreeMap;

use tenken_model::Finding;

/// What changed from `before` to `after`: findings more often in `after` (new) and more
/// often in `before` (vanished), each repeated as often as its count differs, ordered by the
/// finding (receipt, line, record, field, rule, severity, message).
#[derive(Debug, Default)]
pub struct Delta<'a> {
    pub new: Vec<&'a Finding>,
    pub vanished: Vec<&'a Finding>,
}

impl Delta<'_> {
    /// Findings changed: new plus vanished.
    pub fn changed(&self) -> usize {
        self.new.len() + self.vanished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changed() == 0
    }
}

/// The multiset difference of two finding lists.
///
/// The same finding means every field equal (`Finding`'s `Eq`): receipt, line, record,
/// field, rule, severity and message. Why every field: a finding that moved to another field
/// or turned into an error is a change whoever approves must see (an error blocks 請求確定).
/// Why counts and not sets: a change that removes one of two identical findings (the same
/// code billed twice on one line) changes what the institution is told.
pub fn delta<'a>(before: &'a [Finding], after: &'a [Finding]) -> Delta<'a> {
    let mut count: BTreeMap<&Finding, (usize, usize)> = BTreeMap::new();
    for f in before {
        count.entry(f).or_default().0 += 1;
    }
    for f in after {
        count.entry(f).or_default().1 += 1;
    }
    let mut d = Delta::default();
    for (f, (b, a)) in count {
        d.new.extend(std::iter::repeat_n(f, a.saturating_sub(b)));
        d.vanished.extend(std::iter::repeat_n(f, b.saturating_sub(a)));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(receipt: u32, line: u32, rule: &str) -> Finding {
        Finding::error(rule, format!("{rule} on line {line}")).receipt(Some(receipt)).at_line(line)
    }

    #[test]
    fn two_identical_findings_before_and_one_after_is_one_vanished() {
        let before = vec![f(1, 3, "master.procedure.points"), f(1, 3, "master.procedure.points")];
        let after = vec![f(1, 3, "master.procedure.points")];
        let d = delta(&before, &after);
        assert_eq!((d.new.len(), d.vanished.len()), (0, 1), "{d:?}");
        let d = delta(&after, &before);
        assert_eq!((d.new.len(), d.vanished.len()), (1, 0), "{d:?}");
        assert!(delta(&before, &before).is_empty());
    }

    #[test]
    fn every_field_is_part_of_the_identity_and_order_is_not() {
        let a = f(1, 3, "totals.ho.points");
        let mut in_field = a.clone();
        in_field.field = Some(4);
        let mut as_warning = a.clone();
        as_warning.severity = tenken_model::Severity::Warning;
        let mut in_record = a.clone();
        in_record.record = Some("SI".into());
        for b in [in_field, as_warning, in_record] {
            let d = delta(std::slice::from_ref(&a), std::slice::from_ref(&b));
            assert_eq!((d.new, d.vanished), (vec![&b], vec![&a]));
        }
        let (x, y) = (f(1, 3, "a"), f(2, 9, "b"));
        assert!(delta(&[x.clone(), y.clone()], &[y, x]).is_empty());
    }
}
