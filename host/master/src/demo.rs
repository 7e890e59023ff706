//! Demo masters of the project's own making, for machines without the real SSK files.
//!
//! A few hundred entries over all six masters, in the exact SSK column layouts (150/42/38/30/
//! 46/19 columns, every field quoted, CP932, CRLF), every name marked （デモ） so that nobody
//! mistakes them for the real tariff. Some codes and points echo the public tariff (初診料
//! 111000110 and so on) so that generated claims look familiar; most codes are invented.
//!
//! Dates: everything is in force from 2018-04-01, except
//! - a few codes abolished (廃止年月日 2020-03-31 or 2022-03-31): `ABOLISHED_*`,
//! - a few 新規 from 2024-06-01 (変更区分 3): `NEW_*`,
//! - 初診料 and 再診料 revised on 2022-04-01 (旧点数 kept in the row),
//! - a 差分 file `s_20240701.csv` that revises one 検査 from 2024-06-01 and abolishes one
//!   指導料 after 2024-05-31 (`DIFF_*`).

// The row builders take every column that varies as a plain argument: a table of demo data
// reads better that way than through builder structs.
#![allow(clippy::too_many_arguments)]

use std::path::Path;

use tenken_model::MasterKind;

use crate::{MasterError, MasterSet};

/// Name of the demo full files (all dated 2024-06-01) and of the demo 差分.
pub const FULL_DATE: &str = "20240601";
pub const DIFF_FILE: &str = "s_20240701.csv";

/// Codes the tests and the generator can target.
pub const ABOLISHED_PROCEDURES: [&str; 2] = ["160000110", "113099910"];
pub const NEW_PROCEDURES: [&str; 2] = ["113100110", "160300010"];
pub const ABOLISHED_DISEASE: &str = "8890901";
pub const NEW_DISEASE: &str = "8890951";
pub const ABOLISHED_DRUG: &str = "629000901";
pub const NEW_DRUG: &str = "629000951";
pub const ABOLISHED_MATERIAL: &str = "739000901";
/// A material first listed (新規) on 2024-06-01.
pub const NEW_MATERIAL: &str = "739000951";
pub const NEW_COMMENT: &str = "820009951";
/// Revised by the demo 差分 from 2024-06-01: 26 → 28 points.
pub const DIFF_REVISED_PROCEDURE: &str = "160000310";
/// Abolished by the demo 差分: in force up to 2024-05-31.
pub const DIFF_ABOLISHED_PROCEDURE: &str = "113003510";

const IN_FORCE: &str = "20180401";
const NEVER: &str = "99999999";

fn kana_len(s: &str) -> String {
    s.chars().count().to_string()
}

fn demo_name(s: &str) -> String {
    format!("{s}（デモ）")
}

/// One CSV line: every field quoted, `"` doubled.
fn line(cols: &[String]) -> String {
    let mut out = String::new();
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&c.replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
    out
}

fn encode(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    debug_assert!(!unmappable, "demo text must be representable in CP932");
    bytes.into_owned()
}

struct Proc {
    code: &'static str,
    name: &'static str,
    points: f64,
    inout: &'static str,
    age_min: &'static str,
    age_max: &'static str,
    count_max: u32,
    value_kind: &'static str,
}

const fn p(code: &'static str, name: &'static str, points: f64, inout: &'static str) -> Proc {
    Proc { code, name, points, inout, age_min: "00", age_max: "00", count_max: 0, value_kind: "3" }
}

const fn pa(
    code: &'static str,
    name: &'static str,
    points: f64,
    inout: &'static str,
    age_min: &'static str,
    age_max: &'static str,
) -> Proc {
    Proc { code, name, points, inout, age_min, age_max, count_max: 0, value_kind: "3" }
}

const fn pc(code: &'static str, name: &'static str, points: f64, inout: &'static str, count_max: u32) -> Proc {
    Proc { code, name, points, inout, age_min: "00", age_max: "00", count_max, value_kind: "3" }
}

const PROCEDURES: &[Proc] = &[
    p("111000110", "初診料", 288.0, "0"),
    pa("111000370", "乳幼児加算（初診）", 75.0, "0", "00", "06"),
    p("111011810", "初診料（同日２科目）", 144.0, "0"),
    p("112007410", "再診料", 73.0, "2"),
    pa("112007950", "乳幼児加算（再診）", 38.0, "2", "00", "06"),
    p("112011310", "外来管理加算", 52.0, "2"),
    p("112015810", "時間外加算（再診）", 65.0, "2"),
    p("190077410", "急性期一般入院料１", 1650.0, "1"),
    p("190123410", "地域一般入院料３", 988.0, "1"),
    p("190131410", "療養病棟入院料１", 1813.0, "1"),
    pc("113001810", "特定疾患療養管理料（診療所）", 225.0, "2", 2),
    pc("113002310", "特定疾患療養管理料（１００床未満）", 147.0, "2", 2),
    pc("113000910", "悪性腫瘍特異物質治療管理料", 360.0, "0", 1),
    pc("113003510", "てんかん指導料", 250.0, "2", 1),
    pc("113011010", "診療情報提供料（１）", 250.0, "0", 1),
    pc("113012010", "薬剤情報提供料", 4.0, "2", 1),
    Proc {
        code: "113018710",
        name: "乳幼児育児栄養指導料",
        points: 130.0,
        inout: "2",
        age_min: "00",
        age_max: "03",
        count_max: 1,
        value_kind: "3",
    },
    pa("113023910", "高齢者指導加算", 40.0, "2", "75", "00"),
    p("114001110", "往診料", 720.0, "2"),
    p("114030110", "在宅患者訪問診療料（１）", 888.0, "2"),
    p("120000710", "調剤料（内服薬・浸煎薬・屯服薬）（入院外）", 11.0, "2"),
    p("120001110", "調剤料（入院）", 7.0, "1"),
    p("120001210", "処方料（その他）", 42.0, "2"),
    p("120002910", "処方箋料（その他）", 68.0, "2"),
    pc("120003270", "特定疾患処方管理加算２（処方箋料）", 66.0, "2", 1),
    pc("120001010", "調剤技術基本料（その他）", 14.0, "0", 1),
    p("130003510", "皮内、皮下及び筋肉内注射", 22.0, "2"),
    p("130003810", "静脈内注射", 34.0, "2"),
    p("130010510", "点滴注射", 102.0, "0"),
    p("140000610", "創傷処置（１００ｃｍ２未満）", 52.0, "0"),
    p("140000710", "創傷処置（１００ｃｍ２以上５００ｃｍ２未満）", 60.0, "0"),
    p("140009310", "ネブライザ", 12.0, "0"),
    p("140033610", "消炎鎮痛等処置（マッサージ等の手技による療法）", 35.0, "0"),
    Proc {
        code: "150000490",
        name: "乳幼児加算（手術）",
        points: 100.0,
        inout: "0",
        age_min: "00",
        age_max: "06",
        count_max: 0,
        value_kind: "5",
    },
    p("160000310", "尿一般", 26.0, "0"),
    p("160000410", "尿沈渣（鏡検法）", 27.0, "0"),
    p("160008010", "末梢血液一般検査", 21.0, "0"),
    p("160010010", "ＨｂＡ１ｃ", 49.0, "0"),
    p("160019510", "ＣＲＰ", 16.0, "0"),
    pc("160061710", "検体検査判断料（生化学的検査（１））", 144.0, "0", 1),
    pc("160068410", "検体検査判断料（血液学的検査）", 125.0, "0", 1),
    p("160095710", "Ｂ－Ｖ（静脈採血）", 37.0, "2"),
    p("160072110", "心電図検査（１２誘導）", 130.0, "0"),
    p("160218510", "超音波検査（断層撮影法）（胸腹部）", 530.0, "0"),
    p("170000410", "単純撮影（イ）の写真診断", 85.0, "0"),
    p("170000510", "単純撮影（デジタル撮影）", 68.0, "0"),
    p("170011810", "ＣＴ撮影（１６列以上６４列未満）", 900.0, "0"),
    pc("170015210", "電子画像管理加算（単純撮影）", 57.0, "0", 1),
    p("180027410", "運動器リハビリテーション料（３）", 85.0, "0"),
];

/// The 150-column 医科診療行為 row.
fn procedure_row(
    change: &str,
    code: &str,
    name: &str,
    value_kind: &str,
    points: f64,
    old: Option<(&str, f64)>,
    inout: &str,
    ages: (&str, &str),
    count_max: u32,
    changed: &str,
    abolished: &str,
    seq: usize,
) -> Vec<String> {
    let mut c: Vec<String> = (0..150).map(|i| if i < 131 { "0".to_string() } else { String::new() }).collect();
    let name = demo_name(name);
    c[0] = change.into();
    c[1] = "S".into();
    c[2] = code.into();
    c[3] = kana_len(&name);
    c[4] = name.clone();
    c[5] = "3".into();
    c[6] = "ﾃﾞﾓ".into();
    c[9] = String::new();
    c[10] = value_kind.into();
    c[11] = format!("{points:.2}");
    c[12] = inout.into();
    c[31] = NEVER.into();
    c[33] = "0.00".into();
    c[35] = count_max.to_string();
    c[40] = ages.0.into();
    c[41] = ages.1.into();
    let (ok, ov) = old.unwrap_or(("0", 0.0));
    c[56] = ok.into();
    c[57] = format!("{ov:.2}");
    c[84] = code[1..2].to_string();
    c[85] = String::new();
    c[86] = changed.into();
    c[87] = abolished.into();
    c[88] = (seq * 1000).to_string();
    c[112] = name;
    c[116] = String::new();
    c
}

fn procedures() -> String {
    let mut out = String::new();
    let mut seq = 0;
    let mut push = |row: Vec<String>| out.push_str(&line(&row));
    for pr in PROCEDURES {
        seq += 1;
        let (changed, old) = match pr.code {
            // Revised on 2022-04-01; 旧点数 is the 2018 value.
            "111000110" => ("20220401", Some(("3", 282.0))),
            "112007410" => ("20220401", Some(("3", 72.0))),
            _ => (IN_FORCE, None),
        };
        push(procedure_row(
            "0",
            pr.code,
            pr.name,
            pr.value_kind,
            pr.points,
            old,
            pr.inout,
            (pr.age_min, pr.age_max),
            pr.count_max,
            changed,
            NEVER,
            seq,
        ));
    }
    // A series of 検体検査 so that generators have enough to pick from.
    for i in 0..60usize {
        seq += 1;
        let code = format!("1601{:03}10", 100 + i);
        let name = format!("検体検査{:02}", i + 1);
        let points = 11.0 + ((i * 37) % 190) as f64;
        push(procedure_row("0", &code, &name, "3", points, None, "0", ("00", "00"), 0, IN_FORCE, NEVER, seq));
    }
    seq += 1;
    push(procedure_row(
        "0",
        ABOLISHED_PROCEDURES[0],
        "旧尿検査",
        "3",
        20.0,
        None,
        "0",
        ("00", "00"),
        0,
        IN_FORCE,
        "20200331",
        seq,
    ));
    seq += 1;
    push(procedure_row(
        "0",
        ABOLISHED_PROCEDURES[1],
        "旧指導料",
        "3",
        100.0,
        None,
        "2",
        ("00", "00"),
        1,
        IN_FORCE,
        "20220331",
        seq,
    ));
    seq += 1;
    push(procedure_row(
        "3",
        NEW_PROCEDURES[0],
        "新設指導料",
        "3",
        150.0,
        None,
        "2",
        ("00", "00"),
        1,
        "20240601",
        NEVER,
        seq,
    ));
    seq += 1;
    push(procedure_row(
        "3",
        NEW_PROCEDURES[1],
        "新設検査",
        "3",
        80.0,
        None,
        "0",
        ("00", "00"),
        0,
        "20240601",
        NEVER,
        seq,
    ));
    out
}

/// The demo 差分 of the 医科診療行為 master: a 変更 row (only changed columns filled) and a
/// 廃止 row, as the real 差分 files have them.
fn procedure_diff() -> String {
    let mut change: Vec<String> = vec![String::new(); 150];
    change[0] = "5".into();
    change[1] = "S".into();
    change[2] = DIFF_REVISED_PROCEDURE.into();
    change[11] = "28.00".into();
    change[56] = "3".into();
    change[57] = "26.00".into();
    change[86] = "20240601".into();
    let mut abolish: Vec<String> = vec![String::new(); 150];
    abolish[0] = "9".into();
    abolish[1] = "S".into();
    abolish[2] = DIFF_ABOLISHED_PROCEDURE.into();
    abolish[86] = "20240601".into();
    abolish[87] = "20240531".into();
    line(&change) + &line(&abolish)
}

const DRUGS: &[(&str, &str, &str, f64)] = &[
    // (name, 単位, 剤形 1 内用 / 4 注射 / 6 外用, 薬価 per unit)
    ("アムロジピン錠２．５ｍｇ", "錠", "1", 10.1),
    ("アムロジピン錠５ｍｇ", "錠", "1", 10.4),
    ("ロサルタンカリウム錠２５ｍｇ", "錠", "1", 12.6),
    ("ロサルタンカリウム錠５０ｍｇ", "錠", "1", 18.8),
    ("メトホルミン塩酸塩錠２５０ｍｇ", "錠", "1", 10.1),
    ("メトホルミン塩酸塩錠５００ｍｇ", "錠", "1", 10.4),
    ("アトルバスタチン錠５ｍｇ", "錠", "1", 11.2),
    ("アトルバスタチン錠１０ｍｇ", "錠", "1", 17.5),
    ("ロスバスタチン錠２．５ｍｇ", "錠", "1", 10.1),
    ("ファモチジン錠１０ｍｇ", "錠", "1", 10.1),
    ("ファモチジン錠２０ｍｇ", "錠", "1", 10.1),
    ("ランソプラゾールＯＤ錠１５ｍｇ", "錠", "1", 14.8),
    ("ランソプラゾールＯＤ錠３０ｍｇ", "錠", "1", 22.7),
    ("レバミピド錠１００ｍｇ", "錠", "1", 10.1),
    ("酸化マグネシウム錠３３０ｍｇ", "錠", "1", 5.7),
    ("センノシド錠１２ｍｇ", "錠", "1", 5.1),
    ("ロキソプロフェンナトリウム錠６０ｍｇ", "錠", "1", 10.1),
    ("アセトアミノフェン錠２００ｍｇ", "錠", "1", 5.9),
    ("アセトアミノフェン錠５００ｍｇ", "錠", "1", 9.8),
    ("セレコキシブ錠１００ｍｇ", "錠", "1", 18.0),
    ("カルボシステイン錠２５０ｍｇ", "錠", "1", 5.7),
    ("カルボシステイン錠５００ｍｇ", "錠", "1", 7.1),
    ("アンブロキソール塩酸塩錠１５ｍｇ", "錠", "1", 5.7),
    ("デキストロメトルファン臭化水素酸塩錠１５ｍｇ", "錠", "1", 5.7),
    ("レボセチリジン塩酸塩錠５ｍｇ", "錠", "1", 17.9),
    ("フェキソフェナジン塩酸塩錠６０ｍｇ", "錠", "1", 14.6),
    ("モンテルカスト錠１０ｍｇ", "錠", "1", 30.5),
    ("クラリスロマイシン錠２００ｍｇ", "錠", "1", 19.5),
    ("アモキシシリンカプセル２５０ｍｇ", "カプセル", "1", 11.3),
    ("レボフロキサシン錠５００ｍｇ", "錠", "1", 47.9),
    ("セフジトレンピボキシル錠１００ｍｇ", "錠", "1", 22.9),
    ("ゾルピデム酒石酸塩錠５ｍｇ", "錠", "1", 10.1),
    ("ブロチゾラム錠０．２５ｍｇ", "錠", "1", 10.1),
    ("エチゾラム錠０．５ｍｇ", "錠", "1", 6.4),
    ("レボチロキシンナトリウム錠５０μｇ", "錠", "1", 9.8),
    ("ワルファリンカリウム錠１ｍｇ", "錠", "1", 9.8),
    ("アピキサバン錠５ｍｇ", "錠", "1", 134.2),
    ("ビソプロロールフマル酸塩錠２．５ｍｇ", "錠", "1", 10.1),
    ("フロセミド錠２０ｍｇ", "錠", "1", 9.8),
    ("スピロノラクトン錠２５ｍｇ", "錠", "1", 9.4),
    ("アロプリノール錠１００ｍｇ", "錠", "1", 10.1),
    ("フェブキソスタット錠２０ｍｇ", "錠", "1", 23.6),
    ("シタグリプチン錠５０ｍｇ", "錠", "1", 80.4),
    ("エンパグリフロジン錠１０ｍｇ", "錠", "1", 183.6),
    ("プレドニゾロン錠５ｍｇ", "錠", "1", 9.8),
    ("葛根湯エキス顆粒", "ｇ", "1", 8.7),
    ("麦門冬湯エキス顆粒", "ｇ", "1", 9.0),
    ("ツロブテロールテープ２ｍｇ", "枚", "6", 19.1),
    ("ロキソプロフェンナトリウムテープ１００ｍｇ", "枚", "6", 17.1),
    ("ケトプロフェンテープ４０ｍｇ", "枚", "6", 12.0),
    ("ヘパリン類似物質油性クリーム０．３％", "ｇ", "6", 3.9),
    ("ベタメタゾン吉草酸エステル軟膏０．１２％", "ｇ", "6", 10.1),
    ("白色ワセリン", "ｇ", "6", 2.3),
    ("ヒアルロン酸ナトリウム点眼液０．１％　５ｍＬ", "瓶", "6", 153.4),
    ("フルチカゾンプロピオン酸エステル点鼻液５０μｇ", "瓶", "6", 548.0),
    ("生理食塩液　２０ｍＬ", "管", "4", 62.0),
    ("生理食塩液　１００ｍＬ", "瓶", "4", 150.0),
    ("ブドウ糖注射液５％　５００ｍＬ", "袋", "4", 236.0),
    ("乳酸リンゲル液　５００ｍＬ", "袋", "4", 200.0),
    ("セファゾリンナトリウム注射用１ｇ", "瓶", "4", 300.0),
    ("デキサメタゾンリン酸エステルナトリウム注射液３．３ｍｇ", "管", "4", 86.0),
    ("リドカイン塩酸塩注射液１％　５ｍＬ", "管", "4", 86.0),
    ("インフルエンザＨＡワクチン", "瓶", "4", 0.0),
];

fn drug_row(
    change: &str,
    code: &str,
    name: &str,
    unit: &str,
    form: &str,
    price: f64,
    changed: &str,
    abolished: &str,
    listed: &str,
    seq: usize,
) -> Vec<String> {
    let mut c: Vec<String> = vec!["0".to_string(); 42];
    let name = demo_name(name);
    c[0] = change.into();
    c[1] = "Y".into();
    c[2] = code.into();
    c[3] = kana_len(&name);
    c[4] = name.clone();
    c[5] = "3".into();
    c[6] = "ﾃﾞﾓ".into();
    c[7] = "0".into();
    c[8] = kana_len(unit);
    c[9] = unit.into();
    c[10] = "1".into();
    c[11] = format!("{price:.2}");
    c[21] = "1".into();
    c[24] = "0.00".into();
    c[27] = form.into();
    c[28] = String::new();
    c[29] = changed.into();
    c[30] = abolished.into();
    c[31] = String::new();
    c[32] = format!("{:09}", seq * 1000);
    c[34] = name;
    c[35] = listed.into();
    c[36] = String::new();
    c[37] = String::new();
    c[40] = String::new();
    c
}

fn drugs() -> String {
    let mut out = String::new();
    for (i, (name, unit, form, price)) in DRUGS.iter().enumerate() {
        // 610xxxxxx 内用, 640xxxxxx 注射, 620xxxxxx 外用, as the real numbering groups them.
        let prefix = match *form {
            "4" => "640",
            "6" => "620",
            _ => "610",
        };
        let code = format!("{prefix}9{:05}", i + 1);
        out.push_str(&line(&drug_row("0", &code, name, unit, form, *price, IN_FORCE, NEVER, "0", i + 1)));
    }
    let n = DRUGS.len();
    out.push_str(&line(&drug_row(
        "0",
        ABOLISHED_DRUG,
        "旧製剤錠１０ｍｇ",
        "錠",
        "1",
        12.3,
        IN_FORCE,
        "20200331",
        "0",
        n + 1,
    )));
    out.push_str(&line(&drug_row(
        "3",
        NEW_DRUG,
        "新薬錠２５ｍｇ",
        "錠",
        "1",
        245.6,
        "20240601",
        NEVER,
        "20240601",
        n + 2,
    )));
    out
}

const MATERIALS: &[(&str, &str, f64)] = &[
    ("フィルム・半切", "枚", 120.0),
    ("フィルム・大角", "枚", 115.0),
    ("フィルム・四切", "枚", 76.0),
    ("フィルム・六切", "枚", 48.0),
    ("フィルム・デジタル・大角", "枚", 136.0),
    ("酸素（液化酸素・ＣＥ）", "Ｌ", 0.19),
    ("酸素（大型ボンベ）", "Ｌ", 0.42),
    ("膀胱留置用ディスポーザブルカテーテル（２管一般（１））", "本", 233.0),
    ("血管造影用ガイドワイヤー（交換用）", "本", 2270.0),
    ("中心静脈用カテーテル（標準・シングルルーメン）", "本", 1790.0),
    ("皮膚欠損用創傷被覆材（真皮に至る創傷用）", "ｃｍ２", 6.0),
    ("ギプス（四肢）", "ｃｍ", 3.0),
    ("携帯型ディスポーザブル注入ポンプ（一般型）", "個", 3080.0),
    ("在宅自己注射用針（デモ規格）", "本", 17.0),
];

fn material_row(
    change: &str,
    code: &str,
    name: &str,
    unit: &str,
    price: f64,
    ages: (&str, &str),
    changed: &str,
    abolished: &str,
    seq: usize,
) -> Vec<String> {
    let mut c: Vec<String> = vec!["0".to_string(); 38];
    let name = demo_name(name);
    c[0] = change.into();
    c[1] = "T".into();
    c[2] = code.into();
    c[3] = kana_len(&name);
    c[4] = name.clone();
    c[5] = "3".into();
    c[6] = "ﾃﾞﾓ".into();
    c[8] = kana_len(unit);
    c[9] = unit.into();
    c[10] = "1".into();
    c[11] = format!("{price:.2}");
    c[14] = ages.0.into();
    c[15] = ages.1.into();
    c[17] = "0.00".into();
    c[24] = String::new();
    c[25] = (seq * 1000).to_string();
    c[27] = changed.into();
    c[28] = "00000000".into();
    c[29] = abolished.into();
    c[30] = "2".into();
    c[31] = "1".into();
    c[33] = String::new();
    c[34] = String::new();
    c[35] = String::new();
    c[36] = name;
    c[37] = "000".into();
    c
}

fn materials() -> String {
    let mut out = String::new();
    for (i, (name, unit, price)) in MATERIALS.iter().enumerate() {
        let code = format!("7390{:05}", i + 1);
        out.push_str(&line(&material_row("0", &code, name, unit, *price, ("00", "00"), IN_FORCE, NEVER, i + 1)));
    }
    let n = MATERIALS.len();
    out.push_str(&line(&material_row(
        "0",
        "739000801",
        "小児用気管内チューブ",
        "本",
        650.0,
        ("00", "06"),
        IN_FORCE,
        NEVER,
        n + 1,
    )));
    out.push_str(&line(&material_row(
        "0",
        ABOLISHED_MATERIAL,
        "旧型カテーテル",
        "本",
        900.0,
        ("00", "00"),
        IN_FORCE,
        "20200331",
        n + 2,
    )));
    out.push_str(&line(&material_row(
        "3",
        NEW_MATERIAL,
        "新型カテーテル",
        "本",
        1200.0,
        ("00", "00"),
        "20240601",
        NEVER,
        n + 3,
    )));
    out
}

const COMMENTS: &[(&str, &str)] = &[
    // (パターン, 漢字名称)
    ("10", "（自由記載）"),
    ("20", "初診又は再診時に行った検査の結果のみを聞きに来院"),
    ("20", "往診等の後に薬剤のみを取りに来院"),
    ("20", "既に診療した傷病等とは明らかに異なる傷病で受診"),
    ("20", "紹介状を持参して受診"),
    ("20", "休日に受診"),
    ("20", "夜間に受診"),
    ("20", "患者の希望により実施"),
    ("20", "医学的に必要と判断したため実施"),
    ("20", "前回実施日から十分な間隔をあけて実施"),
    ("30", "実施理由："),
    ("30", "症状の詳細："),
    ("30", "他の医療機関名："),
    ("30", "使用薬剤名："),
    ("31", "診療行為名称："),
    ("40", "検査実施回数　　回"),
    ("40", "投与日数　　日"),
    ("42", "体重（ｋｇ）；"),
    ("42", "身長（ｃｍ）；"),
    ("42", "ＨｂＡ１ｃ（％）；"),
    ("50", "前回実施年月日："),
    ("50", "初回算定年月日："),
    ("50", "発症年月日："),
    ("51", "実施時刻："),
    ("52", "所要時間（分）："),
    ("53", "来院日時："),
    ("80", "前回実施年月日及び回数："),
    ("90", "修飾語："),
];

fn comment_row(
    change: &str,
    pattern: &str,
    serial: u32,
    text: &str,
    changed: &str,
    abolished: &str,
    seq: usize,
) -> Vec<String> {
    let mut c: Vec<String> = vec!["0".to_string(); 30];
    let text = demo_name(text);
    c[0] = change.into();
    c[1] = "C".into();
    c[2] = "8".into();
    c[3] = pattern.into();
    c[4] = serial.to_string();
    c[5] = kana_len(&text);
    c[6] = text;
    c[7] = "3".into();
    c[8] = "ﾃﾞﾓ".into();
    c[19] = if pattern == "10" { "0" } else { "1" }.into();
    c[20] = changed.into();
    c[21] = abolished.into();
    c[22] = format!("8{pattern}{serial:06}");
    c[23] = (seq * 1000).to_string();
    for x in &mut c[24..30] {
        x.clear();
    }
    c
}

fn comments() -> String {
    let mut out = String::new();
    for (i, (pattern, text)) in COMMENTS.iter().enumerate() {
        let serial = 9001 + i as u32;
        out.push_str(&line(&comment_row("0", pattern, serial, text, IN_FORCE, NEVER, i + 1)));
    }
    let n = COMMENTS.len();
    out.push_str(&line(&comment_row("0", "20", 9901, "旧様式の記載", IN_FORCE, "20200331", n + 1)));
    out.push_str(&line(&comment_row("3", "20", 9951, "新設された記載", "20240601", NEVER, n + 2)));
    out
}

const DISEASES: &[(&str, &str)] = &[
    // (基本名称, ICD-10)
    ("高血圧症", "I10"),
    ("２型糖尿病", "E119"),
    ("脂質異常症", "E785"),
    ("高コレステロール血症", "E780"),
    ("高尿酸血症", "E790"),
    ("急性上気道炎", "J069"),
    ("感冒", "J00"),
    ("急性気管支炎", "J209"),
    ("気管支喘息", "J459"),
    ("アレルギー性鼻炎", "J304"),
    ("花粉症", "J301"),
    ("インフルエンザ", "J111"),
    ("肺炎", "J189"),
    ("急性胃腸炎", "K529"),
    ("慢性胃炎", "K295"),
    ("逆流性食道炎", "K210"),
    ("胃潰瘍", "K259"),
    ("便秘症", "K590"),
    ("腰痛症", "M545"),
    ("変形性膝関節症", "M179"),
    ("肩関節周囲炎", "M750"),
    ("骨粗鬆症", "M8199"),
    ("頚椎症", "M4792"),
    ("不眠症", "G470"),
    ("片頭痛", "G439"),
    ("緊張型頭痛", "G442"),
    ("めまい症", "R42"),
    ("うつ病", "F329"),
    ("不安神経症", "F419"),
    ("湿疹", "L309"),
    ("蕁麻疹", "L509"),
    ("接触皮膚炎", "L259"),
    ("帯状疱疹", "B029"),
    ("白癬", "B359"),
    ("アレルギー性結膜炎", "H101"),
    ("ドライアイ", "H041"),
    ("白内障", "H269"),
    ("緑内障", "H409"),
    ("膀胱炎", "N309"),
    ("前立腺肥大症", "N40"),
    ("鉄欠乏性貧血", "D509"),
    ("心房細動", "I489"),
    ("狭心症", "I209"),
    ("慢性心不全", "I509"),
    ("甲状腺機能低下症", "E039"),
    ("慢性腎臓病", "N189"),
    ("脂肪肝", "K760"),
    ("急性扁桃炎", "J039"),
    ("中耳炎", "H669"),
    ("熱中症", "T67"),
];

/// 単独使用禁止: names that need a modifier (部位 etc.) to be a diagnosis.
const DISEASES_NEED_MODIFIER: &[(&str, &str)] =
    &[("骨折", "T142"), ("挫傷", "T140"), ("熱傷", "T300"), ("腫瘍", "D489"), ("神経痛", "M792")];

fn disease_row(
    change: &str,
    code: &str,
    name: &str,
    icd: &str,
    single_forbidden: bool,
    listed: &str,
    changed: &str,
    abolished: &str,
    seq: usize,
) -> Vec<String> {
    let mut c: Vec<String> = vec!["0".to_string(); 46];
    let name = demo_name(name);
    c[0] = change.into();
    c[1] = "B".into();
    c[2] = code.into();
    c[3] = code.into();
    c[4] = kana_len(&name);
    c[5] = name.clone();
    c[6] = kana_len(&name);
    c[7] = name.clone();
    c[8] = "2".into();
    c[9] = "デモ".into();
    c[10] = format!("{}", 29_000_000 + seq);
    c[11] = "1".into();
    c[12] = format!("D{:03}", seq % 1000);
    c[13] = String::new();
    c[14] = String::new();
    c[15] = icd.into();
    c[16] = String::new();
    c[17] = String::new();
    c[18] = if single_forbidden { "01" } else { "00" }.into();
    c[20] = "00".into();
    c[21] = listed.into();
    c[22] = changed.into();
    c[23] = abolished.into();
    c[37] = String::new();
    c[38] = name.clone();
    c[39] = String::new();
    c[40] = String::new();
    c[41] = kana_len(&name);
    c[42] = "00".into();
    c[43] = "00".into();
    c
}

fn diseases() -> String {
    let mut out = String::new();
    let mut seq = 0;
    for (name, icd) in DISEASES {
        seq += 1;
        let code = format!("88900{:02}", seq);
        out.push_str(&line(&disease_row("0", &code, name, icd, false, IN_FORCE, IN_FORCE, NEVER, seq)));
    }
    for (i, (name, icd)) in DISEASES_NEED_MODIFIER.iter().enumerate() {
        seq += 1;
        let code = format!("88908{:02}", i + 1);
        out.push_str(&line(&disease_row("0", &code, name, icd, true, IN_FORCE, IN_FORCE, NEVER, seq)));
    }
    seq += 1;
    out.push_str(&line(&disease_row(
        "0",
        ABOLISHED_DISEASE,
        "旧分類病名",
        "R69",
        false,
        IN_FORCE,
        IN_FORCE,
        "20200331",
        seq,
    )));
    seq += 1;
    // 新規 rows of the real 傷病名 master leave 変更年月日 empty and carry 収載年月日.
    out.push_str(&line(&disease_row("3", NEW_DISEASE, "新設病名", "U071", false, "20240601", "", NEVER, seq)));
    out
}

const MODIFIERS: &[(&str, &str)] = &[
    // 1xxx 部位・状態 (接頭語), 8xxx 接尾語
    ("1001", "右"),
    ("1002", "左"),
    ("1003", "両"),
    ("1004", "両側"),
    ("1005", "急性"),
    ("1006", "慢性"),
    ("1007", "再発性"),
    ("1008", "陳旧性"),
    ("1009", "術後"),
    ("1010", "外傷性"),
    ("1011", "習慣性"),
    ("1012", "難治性"),
    ("2001", "頭部"),
    ("2002", "顔面"),
    ("2003", "頚部"),
    ("2004", "胸部"),
    ("2005", "腹部"),
    ("2006", "背部"),
    ("2007", "腰部"),
    ("2008", "肩"),
    ("2009", "上腕"),
    ("2010", "前腕"),
    ("2011", "手"),
    ("2012", "指"),
    ("2013", "大腿"),
    ("2014", "下腿"),
    ("2015", "膝"),
    ("2016", "足"),
    ("2017", "足関節"),
    ("2018", "肋骨"),
    ("2019", "肋間"),
    ("8001", "の疑い"),
    ("8002", "術後"),
    ("8003", "後遺症"),
    ("8004", "・急性増悪"),
];

fn modifier_row(
    change: &str,
    code: &str,
    name: &str,
    listed: &str,
    changed: &str,
    abolished: &str,
    seq: usize,
) -> Vec<String> {
    let mut c: Vec<String> = vec![String::new(); 19];
    let name = demo_name(name);
    c[0] = change.into();
    c[1] = "Z".into();
    c[2] = code.into();
    c[5] = kana_len(&name);
    c[6] = name;
    c[8] = "2".into();
    c[9] = "デモ".into();
    c[11] = "0".into();
    c[12] = "0".into();
    c[13] = listed.into();
    c[14] = changed.into();
    c[15] = abolished.into();
    c[16] = format!("{}", 27_900_000 + seq);
    c[17] = format!("Z{:03}", seq % 1000);
    c[18] = if code.starts_with('8') { "A8000000" } else { "A1000000" }.into();
    c
}

fn modifiers() -> String {
    let mut out = String::new();
    for (i, (code, name)) in MODIFIERS.iter().enumerate() {
        out.push_str(&line(&modifier_row("0", code, name, IN_FORCE, "", NEVER, i + 1)));
    }
    let n = MODIFIERS.len();
    out.push_str(&line(&modifier_row("0", "1901", "旧部位", IN_FORCE, "", "20200331", n + 1)));
    out.push_str(&line(&modifier_row("3", "1951", "新設部位", "20240601", "", NEVER, n + 2)));
    out
}

/// The demo master files: (file name, CP932 bytes), deterministic. Six full files named as
/// SSK names them (`s_ALL20240601.csv` … `b_20240601.txt`, `z_20240601.txt`) and one 差分
/// (`s_20240701.csv`).
pub fn demo_files() -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("s_ALL{FULL_DATE}.csv"), encode(&procedures())),
        (format!("y_ALL{FULL_DATE}.csv"), encode(&drugs())),
        (format!("t_ALL{FULL_DATE}.csv"), encode(&materials())),
        (format!("c_ALL{FULL_DATE}.csv"), encode(&comments())),
        (format!("b_{FULL_DATE}.txt"), encode(&diseases())),
        (format!("z_{FULL_DATE}.txt"), encode(&modifiers())),
        (DIFF_FILE.to_string(), encode(&procedure_diff())),
    ]
}

/// The demo masters loaded through the same reader as real files.
pub fn demo_master_set() -> MasterSet {
    MasterSet::from_files(&demo_files()).expect("the demo masters are well-formed")
}

/// Writes the demo master files into `dir` (created if missing).
pub fn write_demo_masters(dir: &Path) -> Result<(), MasterError> {
    std::fs::create_dir_all(dir).map_err(|source| MasterError::Io { path: dir.to_path_buf(), source })?;
    for (name, bytes) in demo_files() {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| MasterError::Io { path, source })?;
    }
    Ok(())
}

/// The kind a demo file holds (by its name's first letter).
pub fn demo_file_kind(name: &str) -> Option<MasterKind> {
    let letter = name.chars().next()?.to_ascii_lowercase();
    MasterKind::ALL.into_iter().find(|k| k.letter() == letter)
}
