//! Conversions between `tenken-model` and the host-side WIT types (both worlds: the
//! `master-format` bindings share the `office-check` ones' `types`, so each conversion exists
//! once), and the `master` import.

use tenken_model as m;

use crate::bindings::tenken::plugin::{master, types as w};
use crate::contract::Scope;
use crate::converter_bindings::tenken::plugin::master_rows::{ChangeKind, MasterRow};
use crate::engine::HostState;

/// The file-level input of one check, converted once and shared by every plugin call.
pub struct FileInput {
    pub(crate) ctx: w::CheckContext,
    pub(crate) file: w::FileView,
    /// The file's receipts: a file-level finding may name only these (or none).
    pub(crate) scope: Scope,
}

impl FileInput {
    pub fn new(ctx: &m::CheckContext, file: &m::FileView) -> FileInput {
        FileInput {
            ctx: w::CheckContext { payer: payer_to(ctx.payer), header: ctx.header.as_ref().map(header_to) },
            file: w::FileView {
                header: file.header.as_ref().map(header_to),
                trailer: file.trailer.as_ref().map(|t| w::FileTrailer {
                    line: t.line,
                    total_count: t.total_count,
                    total_points: t.total_points,
                    volume: t.volume.clone(),
                }),
                records: file.records.iter().map(raw_to).collect(),
                receipts: file
                    .receipts
                    .iter()
                    .map(|s| w::ReceiptSummary {
                        line: s.line,
                        number: s.number,
                        number_raw: s.number_raw.clone(),
                        service_month: s.service_month.map(ym_to),
                        insurance_records: s.insurance_records,
                        public_records: s.public_records,
                        main_points: s.main_points,
                    })
                    .collect(),
                line_count: file.line_count,
            },
            scope: Scope::new("file", file.receipts.iter().map(|s| (s.number, s.line))),
        }
    }
}

/// A batch of receipts converted once and passed to every plugin.
pub struct Batch {
    pub(crate) receipts: Vec<w::Receipt>,
    /// The batch's receipts: a finding may name only these (or none).
    pub(crate) scope: Scope,
}

impl Batch {
    pub fn new(receipts: &[m::Receipt]) -> Batch {
        Batch {
            receipts: receipts.iter().map(receipt_to).collect(),
            scope: Scope::new("batch", receipts.iter().map(|r| (r.number, r.line))),
        }
    }

    pub fn len(&self) -> usize {
        self.receipts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receipts.is_empty()
    }
}

fn payer_to(p: m::Payer) -> w::Payer {
    match p {
        m::Payer::Ssk => w::Payer::Ssk,
        m::Payer::Kokuho => w::Payer::Kokuho,
    }
}

fn date_to(d: m::Date) -> w::Date {
    w::Date { year: d.year, month: d.month, day: d.day }
}

fn ym_to(d: m::YearMonth) -> w::YearMonth {
    w::YearMonth { year: d.year, month: d.month }
}

fn raw_to(r: &m::RawRecord) -> w::RawRecord {
    w::RawRecord { line: r.line, text: r.text.clone() }
}

fn header_to(h: &m::FileHeader) -> w::FileHeader {
    w::FileHeader {
        line: h.line,
        payer: h.payer.map(payer_to),
        prefecture: h.prefecture.clone(),
        fee_table: h.fee_table.clone(),
        institution_code: h.institution_code.clone(),
        institution_name: h.institution_name.clone(),
        billing_month: h.billing_month.map(ym_to),
        volume: h.volume.clone(),
        phone: h.phone.clone(),
    }
}

fn receipt_to(r: &m::Receipt) -> w::Receipt {
    w::Receipt {
        line: r.line,
        number: r.number,
        kind: r.kind.clone(),
        service_month: r.service_month.map(ym_to),
        name: r.name.clone(),
        sex: r.sex.clone(),
        birth_date: r.birth_date.map(date_to),
        admission_date: r.admission_date.map(date_to),
        special_notes: r.special_notes.clone(),
        insurance: r.insurance.as_ref().map(|h| w::Insurance {
            line: h.line,
            insurer_number: h.insurer_number.clone(),
            symbol: h.symbol.clone(),
            number: h.number.clone(),
            days: h.days,
            total_points: h.total_points,
        }),
        public_expenses: r
            .public_expenses
            .iter()
            .map(|k| w::PublicExpense {
                line: k.line,
                payer_number: k.payer_number.clone(),
                recipient_number: k.recipient_number.clone(),
                days: k.days,
                total_points: k.total_points,
            })
            .collect(),
        diagnoses: r
            .diagnoses
            .iter()
            .map(|d| w::Diagnosis {
                line: d.line,
                code: d.code.clone(),
                start_date: d.start_date.map(date_to),
                outcome: d.outcome.clone(),
                modifiers: d.modifiers.clone(),
                name: d.name.clone(),
                primary: d.primary,
                note: d.note.clone(),
            })
            .collect(),
        lines: r
            .lines
            .iter()
            .map(|l| w::ServiceLine {
                line: l.line,
                kind: match l.kind {
                    m::LineKind::Procedure => w::LineKind::Procedure,
                    m::LineKind::Drug => w::LineKind::Drug,
                    m::LineKind::Material => w::LineKind::Material,
                },
                category: l.category.clone(),
                category_carried: l.category_carried,
                burden: l.burden.clone(),
                code: l.code.clone(),
                quantity: l.quantity.clone(),
                points: l.points,
                count: l.count,
                days: l.days.clone(),
                comments: l
                    .comments
                    .iter()
                    .map(|c| w::LineComment { code: c.code.clone(), text: c.text.clone(), field: c.field })
                    .collect(),
            })
            .collect(),
        comments: r
            .comments
            .iter()
            .map(|c| w::CommentRecord {
                line: c.line,
                category: c.category.clone(),
                burden: c.burden.clone(),
                code: c.code.clone(),
                text: c.text.clone(),
            })
            .collect(),
        records: r.records.iter().map(raw_to).collect(),
    }
}

fn severity_from(s: w::Severity) -> m::Severity {
    match s {
        w::Severity::Info => m::Severity::Info,
        w::Severity::Warning => m::Severity::Warning,
        w::Severity::Error => m::Severity::Error,
    }
}

/// Converts as is: the contract (`contract.rs`) is checked on the result, and only then is
/// the message cut ([`cut_message`]), so an over-long message is seen at its real length.
pub(crate) fn finding_from(f: w::Finding) -> m::Finding {
    m::Finding {
        receipt: f.receipt,
        line: f.line,
        record: f.record,
        field: f.field,
        rule: f.rule,
        severity: severity_from(f.severity),
        message: f.message,
    }
}

/// Cuts a message to `chars_max` characters, marking the cut with `…`.
pub(crate) fn cut_message(message: &mut String, chars_max: usize) {
    if let Some((at, _)) = message.char_indices().nth(chars_max) {
        message.truncate(at);
        message.push('…');
    }
}

pub(crate) fn info_from(i: w::PluginInfo) -> m::PluginInfo {
    m::PluginInfo {
        name: i.name,
        version: i.version,
        rules: i
            .rules
            .into_iter()
            .map(|r| m::RuleInfo { id: r.id, severity: severity_from(r.severity), description: r.description })
            .collect(),
    }
}

pub(crate) fn kind_from(k: w::MasterKind) -> m::MasterKind {
    match k {
        w::MasterKind::Procedure => m::MasterKind::Procedure,
        w::MasterKind::Drug => m::MasterKind::Drug,
        w::MasterKind::Material => m::MasterKind::Material,
        w::MasterKind::Comment => m::MasterKind::Comment,
        w::MasterKind::Disease => m::MasterKind::Disease,
        w::MasterKind::Modifier => m::MasterKind::Modifier,
    }
}

pub(crate) fn kind_to(k: m::MasterKind) -> w::MasterKind {
    match k {
        m::MasterKind::Procedure => w::MasterKind::Procedure,
        m::MasterKind::Drug => w::MasterKind::Drug,
        m::MasterKind::Material => w::MasterKind::Material,
        m::MasterKind::Comment => w::MasterKind::Comment,
        m::MasterKind::Disease => w::MasterKind::Disease,
        m::MasterKind::Modifier => w::MasterKind::Modifier,
    }
}

fn entry_to(e: m::MasterEntry) -> w::MasterEntry {
    w::MasterEntry {
        kind: kind_to(e.kind),
        code: e.code,
        name: e.name,
        value_kind: e.value_kind,
        value: e.value,
        inout: e.inout,
        age_min: e.age_min,
        age_max: e.age_max,
        count_max: e.count_max,
        changed_on: e.changed_on.map(date_to),
        abolished_on: e.abolished_on.map(date_to),
        flags: e.flags,
    }
}

fn date_from(d: w::Date) -> m::Date {
    m::Date { year: d.year, month: d.month, day: d.day }
}

fn change_to(c: char) -> ChangeKind {
    match c {
        '1' => ChangeKind::Deleted,
        '2' => ChangeKind::Restored,
        '3' => ChangeKind::Added,
        '5' => ChangeKind::Changed,
        '9' => ChangeKind::Abolished,
        _ => ChangeKind::Unchanged,
    }
}

fn change_from(c: ChangeKind) -> char {
    match c {
        ChangeKind::Unchanged => '0',
        ChangeKind::Deleted => '1',
        ChangeKind::Restored => '2',
        ChangeKind::Added => '3',
        ChangeKind::Changed => '5',
        ChangeKind::Abolished => '9',
    }
}

/// A canonical master row as the converter's `master-row`.
pub(crate) fn row_to(r: &m::CanonRow) -> MasterRow {
    MasterRow {
        kind: kind_to(r.kind),
        change: change_to(r.change),
        code: r.code.clone(),
        name: r.name.clone(),
        value_kind: r.value_kind.clone(),
        value: r.value.clone(),
        changed_on: r.changed_on.map(date_to),
        abolished_on: r.abolished_on.map(date_to),
        extra: r.extra.clone(),
    }
}

/// A converter's `master-row` as a canonical master row.
pub(crate) fn row_from(r: MasterRow) -> m::CanonRow {
    m::CanonRow {
        kind: kind_from(r.kind),
        change: change_from(r.change),
        code: r.code,
        name: r.name,
        value_kind: r.value_kind,
        value: r.value,
        changed_on: r.changed_on.map(date_from),
        abolished_on: r.abolished_on.map(date_from),
        extra: r.extra,
    }
}

impl w::Host for HostState {}

impl master::Host for HostState {
    fn lookup(&mut self, kind: w::MasterKind, code: String, on: w::Date) -> w::LookupResult {
        match self.masters.lookup(kind_from(kind), &code, date_from(on)) {
            m::Lookup::InForce(e) => w::LookupResult::InForce(entry_to(e)),
            m::Lookup::Abolished(e) => w::LookupResult::Abolished(entry_to(e)),
            m::Lookup::NotYetListed(e) => w::LookupResult::NotYetListed(entry_to(e)),
            m::Lookup::Unknown => w::LookupResult::Unknown,
        }
    }
}
