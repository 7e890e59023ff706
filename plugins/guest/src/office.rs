//! The `office-check` world on the guest side: WIT → `tenken-model` conversions, master
//! lookups through the imported `master` interface, and the export macros (`office_check!`
//! for a `Pack`, `misbehaving_plugin!` for the host's hostile fixtures).

use tenken_model as m;

use crate::bindings::tenken::plugin::{master, types as w};

/// Master lookups answered by the host through the imported `master` interface.
pub struct HostMasters;

impl m::Masters for HostMasters {
    fn lookup(&self, kind: m::MasterKind, code: &str, on: m::Date) -> m::Lookup {
        lookup_from(master::lookup(kind_to(kind), code, date_to(on)))
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

pub(crate) fn date_to(d: m::Date) -> w::Date {
    w::Date { year: d.year, month: d.month, day: d.day }
}

pub(crate) fn date_from(d: w::Date) -> m::Date {
    m::Date { year: d.year, month: d.month, day: d.day }
}

fn ym_from(d: w::YearMonth) -> m::YearMonth {
    m::YearMonth { year: d.year, month: d.month }
}

fn entry_from(e: w::MasterEntry) -> m::MasterEntry {
    m::MasterEntry {
        kind: kind_from(e.kind),
        code: e.code,
        name: e.name,
        value_kind: e.value_kind,
        value: e.value,
        inout: e.inout,
        age_min: e.age_min,
        age_max: e.age_max,
        count_max: e.count_max,
        changed_on: e.changed_on.map(date_from),
        abolished_on: e.abolished_on.map(date_from),
        flags: e.flags,
    }
}

fn lookup_from(l: w::LookupResult) -> m::Lookup {
    match l {
        w::LookupResult::InForce(e) => m::Lookup::InForce(entry_from(e)),
        w::LookupResult::Abolished(e) => m::Lookup::Abolished(entry_from(e)),
        w::LookupResult::NotYetListed(e) => m::Lookup::NotYetListed(entry_from(e)),
        w::LookupResult::Unknown => m::Lookup::Unknown,
    }
}

fn payer_from(p: w::Payer) -> m::Payer {
    match p {
        w::Payer::Ssk => m::Payer::Ssk,
        w::Payer::Kokuho => m::Payer::Kokuho,
    }
}

fn severity_to(s: m::Severity) -> w::Severity {
    match s {
        m::Severity::Info => w::Severity::Info,
        m::Severity::Warning => w::Severity::Warning,
        m::Severity::Error => w::Severity::Error,
    }
}

fn raw_from(r: w::RawRecord) -> m::RawRecord {
    m::RawRecord { line: r.line, text: r.text }
}

fn header_from(h: w::FileHeader) -> m::FileHeader {
    m::FileHeader {
        line: h.line,
        payer: h.payer.map(payer_from),
        prefecture: h.prefecture,
        fee_table: h.fee_table,
        institution_code: h.institution_code,
        institution_name: h.institution_name,
        billing_month: h.billing_month.map(ym_from),
        volume: h.volume,
        phone: h.phone,
    }
}

/// Converts the WIT check context (moves, no copies of strings).
pub fn context_from(c: w::CheckContext) -> m::CheckContext {
    m::CheckContext { payer: payer_from(c.payer), header: c.header.map(header_from) }
}

/// Converts the WIT file view.
pub fn file_from(f: w::FileView) -> m::FileView {
    m::FileView {
        header: f.header.map(header_from),
        trailer: f.trailer.map(|t| m::FileTrailer {
            line: t.line,
            total_count: t.total_count,
            total_points: t.total_points,
            volume: t.volume,
        }),
        records: f.records.into_iter().map(raw_from).collect(),
        receipts: f
            .receipts
            .into_iter()
            .map(|s| m::ReceiptSummary {
                line: s.line,
                number: s.number,
                number_raw: s.number_raw,
                service_month: s.service_month.map(ym_from),
                insurance_records: s.insurance_records,
                public_records: s.public_records,
                main_points: s.main_points,
            })
            .collect(),
        line_count: f.line_count,
    }
}

/// Converts one WIT receipt.
pub fn receipt_from(r: w::Receipt) -> m::Receipt {
    m::Receipt {
        line: r.line,
        number: r.number,
        kind: r.kind,
        service_month: r.service_month.map(ym_from),
        name: r.name,
        sex: r.sex,
        birth_date: r.birth_date.map(date_from),
        admission_date: r.admission_date.map(date_from),
        special_notes: r.special_notes,
        insurance: r.insurance.map(|h| m::Insurance {
            line: h.line,
            insurer_number: h.insurer_number,
            symbol: h.symbol,
            number: h.number,
            days: h.days,
            total_points: h.total_points,
        }),
        public_expenses: r
            .public_expenses
            .into_iter()
            .map(|k| m::PublicExpense {
                line: k.line,
                payer_number: k.payer_number,
                recipient_number: k.recipient_number,
                days: k.days,
                total_points: k.total_points,
            })
            .collect(),
        diagnoses: r
            .diagnoses
            .into_iter()
            .map(|d| m::Diagnosis {
                line: d.line,
                code: d.code,
                start_date: d.start_date.map(date_from),
                outcome: d.outcome,
                modifiers: d.modifiers,
                name: d.name,
                primary: d.primary,
                note: d.note,
            })
            .collect(),
        lines: r
            .lines
            .into_iter()
            .map(|l| m::ServiceLine {
                line: l.line,
                kind: match l.kind {
                    w::LineKind::Procedure => m::LineKind::Procedure,
                    w::LineKind::Drug => m::LineKind::Drug,
                    w::LineKind::Material => m::LineKind::Material,
                },
                category: l.category,
                category_carried: l.category_carried,
                burden: l.burden,
                code: l.code,
                quantity: l.quantity,
                points: l.points,
                count: l.count,
                days: l.days,
                comments: l
                    .comments
                    .into_iter()
                    .map(|c| m::LineComment { code: c.code, text: c.text, field: c.field })
                    .collect(),
            })
            .collect(),
        comments: r
            .comments
            .into_iter()
            .map(|c| m::CommentRecord {
                line: c.line,
                category: c.category,
                burden: c.burden,
                code: c.code,
                text: c.text,
            })
            .collect(),
        records: r.records.into_iter().map(raw_from).collect(),
    }
}

/// Converts a model finding to the WIT type (moves).
pub fn finding_to(f: m::Finding) -> w::Finding {
    w::Finding {
        rule: f.rule,
        severity: severity_to(f.severity),
        message: f.message,
        receipt: f.receipt,
        line: f.line,
        record: f.record,
        field: f.field,
    }
}

/// Converts plugin info to the WIT type.
pub fn info_to(name: &str, version: &str, rules: Vec<m::RuleInfo>) -> w::PluginInfo {
    w::PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        rules: rules
            .into_iter()
            .map(|r| w::RuleInfo { id: r.id, severity: severity_to(r.severity), description: r.description })
            .collect(),
    }
}

/// Defines and exports an office-check component from a [`Pack`](crate::Pack) constant, and
/// makes the bump allocator the component's global allocator (see [`bump_allocator!`]).
///
/// ```text
/// const PACK: tenken_guest::Pack = tenken_guest::Pack { name: "my-rules", version: "1.0.0", rules, check_file, check_receipts };
/// tenken_guest::office_check!(PACK);
/// ```
#[macro_export]
macro_rules! office_check {
    ($pack:expr) => {
        $crate::bump_allocator!();

        struct Plugin;

        impl $crate::bindings::exports::tenken::plugin::checker::Guest for Plugin {
            fn describe() -> $crate::bindings::tenken::plugin::types::PluginInfo {
                let pack: &$crate::Pack = &$pack;
                $crate::info_to(pack.name, pack.version, (pack.rules)())
            }

            fn check_file(
                ctx: $crate::bindings::tenken::plugin::types::CheckContext,
                file: $crate::bindings::tenken::plugin::types::FileView,
            ) -> Vec<$crate::bindings::tenken::plugin::types::Finding> {
                let ctx = $crate::context_from(ctx);
                let file = $crate::file_from(file);
                ($pack.check_file)(&ctx, &file).into_iter().map($crate::finding_to).collect()
            }

            fn check_receipts(
                ctx: $crate::bindings::tenken::plugin::types::CheckContext,
                receipts: Vec<$crate::bindings::tenken::plugin::types::Receipt>,
            ) -> Vec<$crate::bindings::tenken::plugin::types::Finding> {
                let ctx = $crate::context_from(ctx);
                let receipts: Vec<_> = receipts.into_iter().map($crate::receipt_from).collect();
                ($pack.check_receipts)(&ctx, &receipts, &$crate::HostMasters)
                    .into_iter()
                    .map($crate::finding_to)
                    .collect()
            }
        }

        $crate::bindings::export!(Plugin);
    };
}

/// Defines and exports a plugin whose `check-receipts` calls `$misbehave(receipts.len())`
/// and returns nothing; `describe` and `check-file` behave. For the host's hostile-plugin
/// test fixtures (`plugins/hostile-*`), which differ only in how they misbehave.
#[macro_export]
macro_rules! misbehaving_plugin {
    ($name:expr, $misbehave:path) => {
        $crate::bump_allocator!();

        struct Plugin;

        impl $crate::bindings::exports::tenken::plugin::checker::Guest for Plugin {
            fn describe() -> $crate::bindings::tenken::plugin::types::PluginInfo {
                $crate::bindings::tenken::plugin::types::PluginInfo {
                    name: $name.into(),
                    version: "0.0.1".into(),
                    rules: vec![],
                }
            }

            fn check_file(
                _ctx: $crate::bindings::tenken::plugin::types::CheckContext,
                _file: $crate::bindings::tenken::plugin::types::FileView,
            ) -> Vec<$crate::bindings::tenken::plugin::types::Finding> {
                vec![]
            }

            fn check_receipts(
                _ctx: $crate::bindings::tenken::plugin::types::CheckContext,
                receipts: Vec<$crate::bindings::tenken::plugin::types::Receipt>,
            ) -> Vec<$crate::bindings::tenken::plugin::types::Finding> {
                $misbehave(receipts.len());
                vec![]
            }
        }

        $crate::bindings::export!(Plugin);
    };
}

/// Makes the SDK's bump allocator the global allocator of the calling component (wasm32
/// only). Sound only because the host runs every office-check call in a fresh instance (see
/// `bump.rs`). `office_check!` and `misbehaving_plugin!` include it; a plugin exporting its
/// `checker` by hand may add it. Converters do not use it: they handle whole master files,
/// where freed memory should be reused.
#[macro_export]
macro_rules! bump_allocator {
    () => {
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static __TENKEN_GUEST_ALLOCATOR: $crate::Bump = $crate::Bump::new();
    };
}
