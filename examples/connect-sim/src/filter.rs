//! The `filter` query parameter: SCIM-style `<attr> <op> "<value>"` terms joined by `or`.
//!
//! Operators `eq` (exact) and `co` (contains) are what the SDKs send and what was observed on
//! a real server (connect-api.md §3); `or` joins terms. Operators and `or` are matched without
//! regard to case, as SCIM specifies; attribute names too. Values are compared case-sensitively
//! (a guess: the real server's collation is not documented). Inside a value `\"` and `\\` are
//! escapes; the SDKs never send them, but a title containing `"` could not be asked for
//! otherwise. A single quote anywhere in the filter is refused (CHANGELOG 1.5.2), as is any
//! other operator (`sw`, `pr`, `and`, parentheses: unverified against a real server).
//!
//! URL decoding (`+` and `%20` both mean a space) happens before this parser sees the text.

use crate::error::ApiError;

/// A comparison operator.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// Exact match.
    Eq,
    /// Substring match.
    Co,
}

/// One `<attr> <op> "<value>"` term.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Term {
    /// The attribute, lowercased (`title`, `tag`, `name`).
    pub attr: String,
    /// The operator.
    pub op: Op,
    /// The value, unescaped.
    pub value: String,
}

/// A parsed filter: it matches when any term matches.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Filter {
    /// The terms, joined by `or`.
    pub terms: Vec<Term>,
}

/// Why a filter was refused (answered 400).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("Invalid filter: {reason}")]
pub struct FilterError {
    /// What is wrong.
    pub reason: String,
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

fn refuse(reason: impl Into<String>) -> FilterError {
    FilterError {
        reason: reason.into(),
    }
}

impl Filter {
    /// Parses `text`, allowing only the attributes in `attrs` (lowercase).
    pub fn parse(text: &str, attrs: &[&str]) -> Result<Self, FilterError> {
        if text.contains('\'') {
            return Err(refuse("single quotes are not allowed"));
        }
        let mut terms = Vec::new();
        let mut rest = text.trim_start();
        loop {
            let (attr, after) = word(rest).ok_or_else(|| refuse("expected an attribute"))?;
            let attr = attr.to_ascii_lowercase();
            if !attrs.contains(&attr.as_str()) {
                return Err(refuse(format!(
                    "unknown attribute {attr:?} (use {})",
                    attrs.join(" or ")
                )));
            }
            let (op, after) = word(after).ok_or_else(|| refuse("expected an operator"))?;
            let op = match op.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "co" => Op::Co,
                other => return Err(refuse(format!("unsupported operator {other:?}"))),
            };
            let (value, after) = quoted(after.trim_start())?;
            terms.push(Term { attr, op, value });
            let after = after.trim_start();
            if after.is_empty() {
                return Ok(Self { terms });
            }
            let (join, after) = word(after).ok_or_else(|| refuse("expected `or`"))?;
            if !join.eq_ignore_ascii_case("or") {
                return Err(refuse(format!("unsupported operator {join:?}")));
            }
            rest = after.trim_start();
        }
    }

    /// Whether any term matches; `values` gives the candidate values of an attribute.
    pub fn matches<'a, I>(&self, values: impl Fn(&str) -> I) -> bool
    where
        I: IntoIterator<Item = &'a str>,
    {
        self.terms.iter().any(|term| {
            values(&term.attr).into_iter().any(|have| match term.op {
                Op::Eq => have == term.value,
                Op::Co => have.contains(term.value.as_str()),
            })
        })
    }
}

/// The next space-delimited word and the rest (which starts with whitespace or is empty).
fn word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (end > 0 && !text.starts_with('"')).then(|| text.split_at(end))
}

/// A `"…"` value with `\"` and `\\` escapes, and the rest after the closing quote.
fn quoted(text: &str) -> Result<(String, &str), FilterError> {
    let body = text
        .strip_prefix('"')
        .ok_or_else(|| refuse("expected a double-quoted value"))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                let rest = &body[at + 1..];
                if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                    return Err(refuse("text after a closing quote"));
                }
                return Ok((value, rest));
            }
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => value.push(e),
                _ => return Err(refuse("bad escape in value")),
            },
            c => value.push(c),
        }
    }
    Err(refuse("unterminated value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: &[&str] = &["title", "tag"];

    fn term(attr: &str, op: Op, value: &str) -> Term {
        Term {
            attr: attr.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn parses_eq_co_and_or() {
        let f = Filter::parse(r#"title eq "prod-db""#, ITEM).unwrap();
        assert_eq!(f.terms, vec![term("title", Op::Eq, "prod-db")]);
        let f = Filter::parse(r#"title co "db" or tag EQ "banking""#, ITEM).unwrap();
        assert_eq!(
            f.terms,
            vec![term("title", Op::Co, "db"), term("tag", Op::Eq, "banking")]
        );
        let f = Filter::parse(r#"  TITLE  eq  "a b"  OR  title eq "" "#, ITEM).unwrap();
        assert_eq!(
            f.terms,
            vec![term("title", Op::Eq, "a b"), term("title", Op::Eq, "")]
        );
    }

    #[test]
    fn escapes_in_values() {
        let f = Filter::parse(r#"title eq "say \"hi\" \\o/""#, ITEM).unwrap();
        assert_eq!(f.terms[0].value, r#"say "hi" \o/"#);
    }

    #[test]
    fn refuses_what_connect_refuses_or_we_cannot_read() {
        for bad in [
            r#"title eq 'x'"#,
            r#"title eq "it's""#,
            r#"title sw "x""#,
            r#"title pr"#,
            r#"title eq "a" and title eq "b""#,
            r#"(title eq "a")"#,
            r#"name eq "a""#,
            r#"title eq x"#,
            r#"title eq "x"#,
            r#"title eq "x"y"#,
            r#"title eq "x" or"#,
            r#"title eq "\x""#,
            r#"title eq "x" title eq "y""#,
            "",
            "title",
            "title eq",
        ] {
            let error = Filter::parse(bad, ITEM).expect_err(bad);
            assert!(error.to_string().starts_with("Invalid filter: "), "{error}");
        }
    }

    #[test]
    fn matching() {
        let f = Filter::parse(r#"title eq "db" or tag co "bank""#, ITEM).unwrap();
        let item = |title: &'static str, tags: &'static [&'static str]| {
            move |attr: &str| -> Vec<&'static str> {
                match attr {
                    "title" => vec![title],
                    _ => tags.to_vec(),
                }
            }
        };
        assert!(f.matches(item("db", &[])));
        assert!(!f.matches(item("DB", &[])), "eq is case-sensitive");
        assert!(!f.matches(item("db2", &[])), "eq is exact");
        assert!(f.matches(item("x", &["online-banking"])));
        assert!(!f.matches(item("x", &["other"])));
    }
}
