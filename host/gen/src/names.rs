//! Synthetic name tables (common Japanese family and given names with readings) and the
//! other fixed texts the generator writes, encoded to CP932 once.
//!
//! The names are common ones combined at random; no table row describes a real person.

use crate::write::sjis;

/// (漢字, カタカナ).
const FAMILY: &[(&str, &str)] = &[
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
    ("村上", "ムラカミ"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("坂本", "サカモト"),
];

const GIVEN_MALE: &[(&str, &str)] = &[
    ("翔太", "ショウタ"),
    ("大輔", "ダイスケ"),
    ("健一", "ケンイチ"),
    ("誠", "マコト"),
    ("隆", "タカシ"),
    ("浩", "ヒロシ"),
    ("拓也", "タクヤ"),
    ("直樹", "ナオキ"),
    ("和夫", "カズオ"),
    ("茂", "シゲル"),
    ("蓮", "レン"),
    ("悠真", "ユウマ"),
    ("陽翔", "ハルト"),
    ("湊", "ミナト"),
    ("健太", "ケンタ"),
    ("修", "オサム"),
    ("正男", "マサオ"),
    ("清", "キヨシ"),
    ("勇", "イサム"),
    ("達也", "タツヤ"),
];

const GIVEN_FEMALE: &[(&str, &str)] = &[
    ("美咲", "ミサキ"),
    ("陽子", "ヨウコ"),
    ("恵子", "ケイコ"),
    ("由美", "ユミ"),
    ("裕子", "ユウコ"),
    ("真由美", "マユミ"),
    ("明美", "アケミ"),
    ("幸子", "サチコ"),
    ("和子", "カズコ"),
    ("節子", "セツコ"),
    ("陽葵", "ヒマリ"),
    ("結衣", "ユイ"),
    ("凛", "リン"),
    ("葵", "アオイ"),
    ("さくら", "サクラ"),
    ("愛", "アイ"),
    ("花子", "ハナコ"),
    ("千尋", "チヒロ"),
    ("直美", "ナオミ"),
    ("久美子", "クミコ"),
];

/// Place names for hospital names.
const PLACES: &[&str] =
    &["東山", "西町", "南台", "北野", "緑ヶ丘", "桜台", "青葉", "若葉", "中央", "港南", "川西", "本町"];

/// Clinic name suffixes.
const CLINICS: &[&str] =
    &["内科クリニック", "医院", "診療所", "内科医院", "こどもクリニック", "整形外科", "皮膚科クリニック", "眼科医院"];

/// CO 文字データ for free-text comments (パターン 10) after a 内服 剤.
const COMMENT_TEXTS: &[&str] =
    &["疼痛時", "発熱時", "１日３回　毎食後", "１日２回　朝夕食後", "１日１回　朝食後", "就寝前", "咳嗽時"];

/// 傷病名称 of 未コード化傷病名 (0000999).
const UNCODED_NAMES: &[&str] = &["右膝関節痛", "全身倦怠感", "食欲不振", "皮膚そう痒症", "左肩関節痛", "頭重感"];

/// A name part: (漢字 bytes, カタカナ bytes), CP932.
pub(crate) struct Part {
    pub kanji: Vec<u8>,
    pub kana: Vec<u8>,
}

pub(crate) struct Names {
    pub family: Vec<Part>,
    pub male: Vec<Part>,
    pub female: Vec<Part>,
    /// Full-width space between family and given name (「テスト　汎用」 in the sample).
    pub space: Vec<u8>,
    pub comments: Vec<Vec<u8>>,
    pub uncoded: Vec<Vec<u8>>,
}

fn parts(t: &[(&str, &str)]) -> Vec<Part> {
    t.iter().map(|(k, r)| Part { kanji: sjis(k), kana: sjis(r) }).collect()
}

impl Names {
    pub fn new() -> Names {
        Names {
            family: parts(FAMILY),
            male: parts(GIVEN_MALE),
            female: parts(GIVEN_FEMALE),
            space: sjis("\u{3000}"),
            comments: COMMENT_TEXTS.iter().map(|t| sjis(t)).collect(),
            uncoded: UNCODED_NAMES.iter().map(|t| sjis(t)).collect(),
        }
    }
}

/// An institution name (CP932, at most 20 full-width characters = 40 bytes).
pub(crate) fn institution_name(hospital: bool, a: usize, b: usize) -> Vec<u8> {
    let name = if hospital {
        format!("{}{}", PLACES[a % PLACES.len()], if b.is_multiple_of(3) { "総合病院" } else { "中央病院" })
    } else {
        format!("{}{}", FAMILY[a % FAMILY.len()].0, CLINICS[b % CLINICS.len()])
    };
    sjis(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_cp932() {
        let all = FAMILY.iter().chain(GIVEN_MALE).chain(GIVEN_FEMALE).flat_map(|(a, b)| [*a, *b]);
        for t in all
            .chain(PLACES.iter().copied())
            .chain(CLINICS.iter().copied())
            .chain(COMMENT_TEXTS.iter().copied())
            .chain(UNCODED_NAMES.iter().copied())
        {
            let (_, _, bad) = encoding_rs::SHIFT_JIS.encode(t);
            assert!(!bad, "{t}");
        }
        for a in 0..FAMILY.len() {
            for b in 0..CLINICS.len() {
                assert!(institution_name(false, a, b).len() <= 40);
                assert!(institution_name(true, a, b).len() <= 40);
            }
        }
    }
}
