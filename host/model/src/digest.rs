//! `Digest`: the sha256 content address of a blob, plugin component or master set, with one
//! spelling everywhere (`sha256:<64 lowercase hex digits>`).
//!
//! Why a type: digests used to be strings in two spellings (bare hex for blobs, `sha256:`
//! for plugins and masters), so the same bytes could fail to match themselves. A `Digest`
//! is parsed once, strictly, where text enters (HTTP paths, stored rows) and compared as
//! bytes from then on.

/// A sha256 digest. Displays (and serializes) as `sha256:<hex>`; ordered by its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a text is not a digest; its message says the expected form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestError(pub String);

impl std::fmt::Display for DigestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.0.chars().take(80).collect();
        write!(f, "{shown:?} is not a digest: expected sha256: followed by 64 lowercase hex digits")
    }
}

impl std::error::Error for DigestError {}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Digest {
    pub const PREFIX: &'static str = "sha256:";

    /// The digest whose sha256 bytes are `bytes` (the caller hashed them).
    pub const fn from_sha256(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits without the prefix (a blob's file name).
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// `sha256:` and the first 12 hex digits, for people reading a listing.
    pub fn short(&self) -> String {
        format!("{}{}", Self::PREFIX, &self.hex()[..12])
    }

    /// Parses the 64 hex digits alone (a blob's file name, never user input).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let b = hex.as_bytes();
        if b.len() != 64 {
            return Err(DigestError(hex.to_owned()));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => return Err(DigestError(hex.to_owned())),
            }
        }
        Ok(Digest(out))
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;

    /// Strict: exactly `sha256:` and 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let hex = s.strip_prefix(Self::PREFIX).ok_or_else(|| DigestError(s.to_owned()))?;
        Digest::from_hex(hex).map_err(|_| DigestError(s.to_owned()))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::PREFIX)?;
        f.write_str(&self.hex())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({self})")
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_parsed_strictly() {
        let hex = "2db32605c51a5595cd01b8214135037d4b6d81a25ecff10671304d62392a129d";
        let d: Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(d.hex(), hex);
        assert_eq!(Digest::from_hex(hex).unwrap(), d);
        assert_eq!(d.short(), "sha256:2db32605c51a");
        for bad in [
            hex.to_owned(),                           // bare hex: the other spelling
            format!("SHA256:{hex}"),                  // prefix case
            format!("sha256:{}", hex.to_uppercase()), // digit case
            format!("sha256:{}", &hex[..63]),         // short
            format!("sha256:{hex}0"),                 // long
            format!("sha256: {}", &hex[1..]),         // space
            format!("sha256:{}g", &hex[..63]),        // not hex
            String::new(),
        ] {
            let e = bad.parse::<Digest>().unwrap_err();
            assert!(e.to_string().contains("expected sha256:"), "{bad:?}: {e}");
        }
    }
}
