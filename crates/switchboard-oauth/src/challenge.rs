//! Parsing `WWW-Authenticate` (RFC 9110 §11.6.1): one or more challenges, each a scheme
//! followed by either a token68 or comma-separated `name=value` parameters.
//!
//! The grammar is ambiguous at a comma: what follows is either the next parameter of the
//! same challenge (`name=value`) or the scheme of a new one (a token not followed by `=`).
//! The parser looks past the token to decide.
//!
//! ```text
//! WWW-Authenticate: Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource",
//!                   scope="files:read", Basic realm="mcp"
//! ```

use serde::{Deserialize, Serialize};

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The scheme as sent (`Bearer`, `Basic`, `DPoP`…); compare with
    /// [`Challenge::is_scheme`], which ignores case.
    pub scheme: String,
    /// The parameters in order; names lowercased (they are case-insensitive), values with
    /// quoting and escapes removed.
    pub params: Vec<(String, String)>,
    /// The token68 form, when the challenge carries one instead of parameters.
    pub token68: Option<String>,
}

impl Challenge {
    /// Whether the scheme is `name`, ignoring case.
    pub fn is_scheme(&self, name: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(name)
    }

    /// The first parameter called `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `resource_metadata` (RFC 9728 §5.1): where the protected-resource metadata is.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.param("resource_metadata").filter(|v| !v.is_empty())
    }

    /// `scope` (RFC 6750 §3), split on spaces; empty when absent.
    pub fn scopes(&self) -> Vec<String> {
        split_scopes(self.param("scope").unwrap_or(""))
    }

    /// `error` (RFC 6750 §3.1), such as `invalid_token` or `insufficient_scope`.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    /// `error_description` (RFC 6750 §3).
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }

    /// `realm` (RFC 9110 §11.5).
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// Whether this is a Bearer challenge with `error="insufficient_scope"` (a 403 that asks
    /// for more scopes, RFC 6750 §3.1).
    pub fn is_insufficient_scope(&self) -> bool {
        self.is_scheme("Bearer") && self.error() == Some("insufficient_scope")
    }
}

/// Every challenge in a `WWW-Authenticate` value. When a response carries several header
/// lines, join them with `", "` first (RFC 9110 §5.3). Malformed parts are skipped rather than
/// failing the whole header: a server's sloppy challenge should still be understood where it
/// can be.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        if p.at_end() {
            break;
        }
        let Some(scheme) = p.token() else {
            // Not a token where a scheme should be: skip to the next comma and try again.
            p.skip_past_comma();
            continue;
        };
        let mut challenge = Challenge {
            scheme,
            params: Vec::new(),
            token68: None,
        };
        let had_space = p.skip_spaces();
        if had_space && !p.at_end() && p.peek() != Some(b',') {
            // The first item after the scheme: a parameter or a token68.
            let start = p.i;
            match p.param() {
                Some(param) => challenge.params.push(param),
                None => {
                    p.i = start;
                    challenge.token68 = p.token68();
                    if challenge.token68.is_none() {
                        p.skip_past_comma();
                    }
                }
            }
        }
        // Further parameters, each after a comma; a token not followed by `=` starts the next
        // challenge.
        if challenge.token68.is_none() {
            loop {
                let before = p.i;
                p.skip_spaces();
                if p.peek() != Some(b',') {
                    p.i = before;
                    break;
                }
                p.skip_list_separators();
                let start = p.i;
                match p.param() {
                    Some(param) => challenge.params.push(param),
                    None => {
                        p.i = start;
                        break;
                    }
                }
            }
        }
        out.push(challenge);
    }
    out
}

/// The first Bearer challenge among `challenges`.
pub fn bearer(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges.iter().find(|c| c.is_scheme("Bearer"))
}

/// Splits a space-delimited scope string (RFC 6749 §3.3) into its scopes, dropping empty ones
/// and repeats.
pub fn split_scopes(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split([' ', '\t']).filter(|s| !s.is_empty()) {
        if !out.iter().any(|have| have == s) {
            out.push(s.to_owned());
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of a token68 before its padding (RFC 9110 §11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips spaces and tabs; says whether there were any.
    fn skip_spaces(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i > start
    }

    /// Skips whitespace and commas (empty list elements are allowed, RFC 9110 §5.6.1).
    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn skip_past_comma(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.i += 1,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// `name BWS "=" BWS ( token / quoted-string )`, or `None` (position unspecified) when the
    /// input is not a parameter there.
    fn param(&mut self) -> Option<(String, String)> {
        let name = self.token()?;
        self.skip_spaces();
        if self.peek() != Some(b'=') {
            return None;
        }
        self.i += 1;
        self.skip_spaces();
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            // A token. Nothing (or more `=`) after `name=` means this was a token68 with
            // padding, such as `abc=`.
            self.token()?
        };
        Some((name.to_ascii_lowercase(), value))
    }

    fn quoted(&mut self) -> Option<String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek()?;
                    self.i += 1;
                    out.push(escaped);
                }
                other => out.push(other),
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_token68_char) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let end = self.i;
        self.skip_spaces();
        // A token68 is the whole challenge: only a comma or the end may follow.
        if !(self.at_end() || self.peek() == Some(b',')) {
            return None;
        }
        Some(String::from_utf8_lossy(&self.s[start..end]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn bearer_with_mcp_parameters() {
        let header = r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", scope="files:read files:write", error="insufficient_scope", error_description="needs \"write\"""#;
        let all = parse(header);
        assert_eq!(all.len(), 1);
        let c = &all[0];
        assert!(c.is_scheme("bearer"));
        assert_eq!(
            c.resource_metadata(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        assert_eq!(c.scopes(), ["files:read", "files:write"]);
        assert!(c.is_insufficient_scope());
        assert_eq!(c.error_description(), Some(r#"needs "write""#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let all =
            parse(r#"Basic realm="mcp", Bearer scope=read, error=invalid_token,DPoP algs="ES256""#);
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP"]);
        assert_eq!(all[0].realm(), Some("mcp"));
        assert_eq!(
            params(&all[1]),
            [("scope", "read"), ("error", "invalid_token")]
        );
        assert_eq!(all[2].param("ALGS"), Some("ES256"));
        assert_eq!(bearer(&all).map(|c| c.scheme.as_str()), Some("Bearer"));
    }

    #[test]
    fn bare_schemes_and_token68() {
        let all = parse("Bearer, Negotiate abc+/def==, Basic");
        assert_eq!(all.len(), 3);
        assert!(all[0].params.is_empty() && all[0].token68.is_none());
        assert_eq!(all[1].token68.as_deref(), Some("abc+/def=="));
        assert!(all[2].is_scheme("basic"));
        let one = parse("Newauth abc=");
        assert_eq!(one[0].token68.as_deref(), Some("abc="));
    }

    #[test]
    fn names_are_case_insensitive_and_spaces_around_equals_are_allowed() {
        let all = parse(r#"bearer Realm = "x" ,  SCOPE="a  b a""#);
        assert_eq!(params(&all[0]), [("realm", "x"), ("scope", "a  b a")]);
        assert_eq!(all[0].scopes(), ["a", "b"]);
    }

    #[test]
    fn malformed_parts_do_not_hide_the_rest() {
        let all = parse(r#""junk", Bearer scope="unterminated"#);
        // The unterminated quote leaves the Bearer challenge without that parameter.
        assert!(all.iter().any(|c| c.is_scheme("bearer")));
        assert!(parse("").is_empty());
        assert!(parse(" , ,").is_empty());
    }

    #[test]
    fn scopes_split_on_spaces_without_repeats() {
        assert_eq!(split_scopes(" a b\ta  c "), ["a", "b", "c"]);
        assert!(split_scopes("").is_empty());
    }
}
