//! Subjects and subject patterns, in NATS syntax, for every backend.
//!
//! A subject is a dot-separated list of tokens: `orders.created.eu`. A pattern
//! may use two wildcards as whole tokens: `*` matches exactly one token
//! (`orders.*.eu`), `>` matches one or more tokens and may only be last
//! (`orders.>`). A subject a message is published to never has a wildcard.

use std::fmt;

use crate::error::InvalidSubject;

/// The longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Checks `subject` is a valid subject to publish to: non-empty tokens of
/// printable ASCII without spaces, no wildcard.
///
/// # Errors
///
/// [`InvalidSubject`] saying what is wrong.
pub fn validate_subject(subject: &str) -> Result<(), InvalidSubject> {
    check_tokens(subject, false)
}

/// Checks `pattern` is a valid subscription pattern (a subject, or one with
/// `*` and a trailing `>` as whole tokens).
///
/// # Errors
///
/// [`InvalidSubject`] saying what is wrong.
pub fn validate_pattern(pattern: &str) -> Result<(), InvalidSubject> {
    check_tokens(pattern, true)
}

fn check_tokens(s: &str, wildcards: bool) -> Result<(), InvalidSubject> {
    if s.is_empty() {
        return Err(InvalidSubject::new(s, "is empty"));
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(InvalidSubject::new(
            s,
            format!("is longer than {MAX_SUBJECT_LEN} bytes"),
        ));
    }
    // Every message built is checked: one pass over the bytes, each token
    // judged at its end (the reasons, and which comes first, are those of
    // checking token by token).
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut wildcard_bytes = false;
    for at in 0..=bytes.len() {
        let byte = bytes.get(at).copied().unwrap_or(b'.');
        if byte != b'.' {
            if !byte.is_ascii_graphic() {
                return Err(InvalidSubject::new(
                    s,
                    format!("has a space, a control or a non-ASCII byte (0x{byte:02x})"),
                ));
            }
            wildcard_bytes |= byte == b'*' || byte == b'>';
            continue;
        }
        let token = &bytes[start..at];
        if token.is_empty() {
            return Err(InvalidSubject::new(s, "has an empty token"));
        }
        if wildcard_bytes {
            match token {
                b"*" | b">" if !wildcards => {
                    return Err(InvalidSubject::new(
                        s,
                        "has a wildcard; publish to a literal subject",
                    ));
                }
                b">" if at != bytes.len() => {
                    return Err(InvalidSubject::new(s, "has `>` before its last token"));
                }
                b"*" | b">" => {}
                _ => {
                    return Err(InvalidSubject::new(
                        s,
                        "has `*` or `>` inside a token; wildcards are whole tokens",
                    ));
                }
            }
        }
        start = at + 1;
        wildcard_bytes = false;
    }
    Ok(())
}

/// A validated subscription pattern, split into tokens once so matching a
/// subject is a walk over both token lists.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Box<str>,
    tokens: Box<[Token]>,
    literal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Literal(Box<str>),
    One,
    Rest,
}

impl Pattern {
    /// Parses and validates `pattern`.
    ///
    /// # Errors
    ///
    /// [`InvalidSubject`] saying what is wrong.
    pub fn new(pattern: &str) -> Result<Self, InvalidSubject> {
        validate_pattern(pattern)?;
        let tokens: Box<[Token]> = pattern
            .split('.')
            .map(|t| match t {
                "*" => Token::One,
                ">" => Token::Rest,
                t => Token::Literal(t.into()),
            })
            .collect();
        let literal = tokens.iter().all(|t| matches!(t, Token::Literal(_)));
        Ok(Self {
            text: pattern.into(),
            tokens,
            literal,
        })
    }

    /// The pattern as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `true` when the pattern has no wildcard.
    #[must_use]
    pub const fn is_literal(&self) -> bool {
        self.literal
    }

    /// Whether the (valid, literal) `subject` matches this pattern.
    ///
    /// One pass over the subject's bytes, comparing each literal token in
    /// place (no token iterator): this runs for every subscription pattern on
    /// every in-process publish.
    #[must_use]
    #[inline]
    pub fn matches(&self, subject: &str) -> bool {
        if self.literal {
            return *self.text == *subject;
        }
        let s = subject.as_bytes();
        // `pos`: where the subject's next token starts; past the end once
        // every token is used (`s.len()` itself is an empty last token).
        let mut pos = 0;
        for token in &*self.tokens {
            if pos > s.len() {
                return false;
            }
            match token {
                Token::Rest => return true,
                Token::One => {
                    pos = s[pos..]
                        .iter()
                        .position(|&b| b == b'.')
                        .map_or(s.len() + 1, |i| pos + i + 1);
                }
                Token::Literal(lit) => {
                    let lit = lit.as_bytes();
                    let end = pos + lit.len();
                    // A literal token never holds a dot, so equal bytes
                    // followed by a dot or the end are the whole token.
                    match s.get(pos..end) {
                        Some(part) if part == lit => {}
                        _ => return false,
                    }
                    match s.get(end) {
                        None | Some(b'.') => pos = end + 1,
                        Some(_) => return false,
                    }
                }
            }
        }
        pos > s.len()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.text).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn literal_and_wildcard_matching() {
        let p = |s| Pattern::new(s).unwrap();
        assert!(p("orders.created").matches("orders.created"));
        assert!(!p("orders.created").matches("orders.created.eu"));
        assert!(p("orders.*").matches("orders.created"));
        assert!(!p("orders.*").matches("orders"));
        assert!(!p("orders.*").matches("orders.created.eu"));
        assert!(p("orders.>").matches("orders.created"));
        assert!(p("orders.>").matches("orders.created.eu"));
        assert!(!p("orders.>").matches("orders"));
        assert!(p("*.created.>").matches("orders.created.eu.1"));
        assert!(!p("*.created.>").matches("orders.updated.eu"));
        assert!(p(">").matches("a"));
        assert!(p("*").matches("a"));
        assert!(!p("*").matches("a.b"));
    }

    #[test]
    fn rejects_bad_subjects_and_patterns() {
        for bad in [
            "", "a..b", ".a", "a.", "a b", "a.\tb", "a.>.b", "a.b*", "a.>x", "é",
        ] {
            assert!(
                validate_pattern(bad).is_err(),
                "{bad:?} accepted as a pattern"
            );
        }
        assert!(validate_subject("orders.*").is_err());
        assert!(validate_subject("orders.>").is_err());
        assert!(validate_subject(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
        assert!(validate_subject("orders.created-1_x").is_ok());
        assert!(validate_pattern("orders.*.>").is_ok());
    }

    /// The reference: a plain recursive reading of the NATS rules.
    fn model(pattern: &[&str], subject: &[&str]) -> bool {
        match (pattern.split_first(), subject.split_first()) {
            (None, None) => true,
            (Some((&">", _)), Some(_)) => true,
            (Some((&"*", p)), Some((_, s))) => model(p, s),
            (Some((lit, p)), Some((tok, s))) => lit == tok && model(p, s),
            _ => false,
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("cc".to_owned())
        ]
    }

    /// The checker before it walked bytes: splitting on dots.
    fn check_reference(s: &str, wildcards: bool) -> Result<(), String> {
        if s.is_empty() || s.len() > MAX_SUBJECT_LEN {
            return Err("length".into());
        }
        let mut tokens = s.split('.').peekable();
        while let Some(token) = tokens.next() {
            if token.is_empty() {
                return Err("has an empty token".into());
            }
            if let Some(bad) = token.bytes().find(|b| !b.is_ascii_graphic()) {
                return Err(format!(
                    "has a space, a control or a non-ASCII byte (0x{bad:02x})"
                ));
            }
            match token {
                "*" | ">" if !wildcards => {
                    return Err("has a wildcard; publish to a literal subject".into());
                }
                ">" if tokens.peek().is_some() => {
                    return Err("has `>` before its last token".into());
                }
                _ if token.len() > 1 && (token.contains('*') || token.contains('>')) => {
                    return Err("has `*` or `>` inside a token; wildcards are whole tokens".into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The matcher before it walked bytes: splitting on dots.
    fn split_reference(pattern: &Pattern, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for token in &*pattern.tokens {
            match token {
                Token::Rest => return parts.next().is_some(),
                Token::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(lit) => match parts.next() {
                    Some(part) if part == &**lit => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    proptest! {
        #[test]
        fn matches_like_the_model(
            subject in proptest::collection::vec(token(), 1..5),
            pattern in proptest::collection::vec(
                prop_oneof![token(), Just("*".to_owned())], 1..5),
            rest in any::<bool>(),
        ) {
            let mut pattern = pattern;
            if rest {
                *pattern.last_mut().unwrap() = ">".to_owned();
            }
            let text = pattern.join(".");
            let subj = subject.join(".");
            let p = Pattern::new(&text).unwrap();
            let pv: Vec<&str> = pattern.iter().map(String::as_str).collect();
            let sv: Vec<&str> = subject.iter().map(String::as_str).collect();
            prop_assert_eq!(p.matches(&subj), model(&pv, &sv), "{} vs {}", text, subj);
        }

        /// Any string, valid subject or not (empty tokens, stray bytes),
        /// matches as splitting on dots would.
        #[test]
        fn matches_like_splitting(
            subject in "[abc.>*]{0,8}",
            pattern in proptest::collection::vec(
                prop_oneof![token(), Just("*".to_owned())], 1..5),
            rest in any::<bool>(),
        ) {
            let mut pattern = pattern;
            if rest {
                *pattern.last_mut().unwrap() = ">".to_owned();
            }
            let p = Pattern::new(&pattern.join(".")).unwrap();
            prop_assert_eq!(p.matches(&subject), split_reference(&p, &subject));
        }

        /// Subjects and patterns are accepted and refused as splitting
        /// did, with the same reason.
        #[test]
        fn checks_like_splitting(s in "[ab.>* é\t]{0,10}", wildcards in any::<bool>()) {
            let ours = check_tokens(&s, wildcards).map_err(|e| e.to_string());
            let reference = check_reference(&s, wildcards);
            prop_assert_eq!(ours.is_ok(), reference.is_ok(), "{:?}", s);
            if let (Err(ours), Err(reference)) = (ours, reference)
                && reference != "length" {
                    prop_assert!(ours.contains(&reference), "{:?}: {} vs {}", s, ours, reference);
                }
        }
    }
}
