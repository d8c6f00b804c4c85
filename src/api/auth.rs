//! Bearer tokens: configured as SHA-256 hashes with a name and a role; a presented token is
//! hashed and compared with every configured hash in constant time.

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::config::ApiToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Regulator,
    Operator,
    Gateway,
    /// Jasmin's receipt credential: it travels in the `dlr-url` Jasmin is given, so it may
    /// post Jasmin receipts and nothing else.
    Jasmin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Regulator => "regulator",
            Role::Operator => "operator",
            Role::Gateway => "gateway",
            Role::Jasmin => "jasmin",
        }
    }
}

struct Entry {
    name: String,
    hash: [u8; 32],
    role: Role,
}

pub struct Tokens(Vec<Entry>);

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equal in constant time: every byte is looked at whatever the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    pub fn from_config(tokens: &[ApiToken]) -> anyhow::Result<Tokens> {
        let entries = tokens
            .iter()
            .map(|t| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.token_sha256, &mut hash)
                    .map_err(|_| anyhow::anyhow!("api.tokens: {} has a bad token_sha256", t.name))?;
                let role = match t.role.as_str() {
                    "regulator" => Role::Regulator,
                    "operator" => Role::Operator,
                    "gateway" => Role::Gateway,
                    "jasmin" => Role::Jasmin,
                    other => anyhow::bail!("api.tokens: {} has an unknown role {other}", t.name),
                };
                Ok(Entry { name: t.name.clone(), hash, role })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Tokens(entries))
    }

    /// The name and role of the bearer token in `headers`, if it is a configured one.
    pub fn bearer(&self, headers: &HeaderMap) -> Option<(&str, Role)> {
        let token =
            headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))?;
        self.identify(token)
    }

    /// The role of the configured token named `name`, if there still is one: a console
    /// session ends when its token is removed or changes role.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.0.iter().find(|entry| entry.name == name).map(|entry| entry.role)
    }

    /// The name and role of the token, or `None` when no configured token matches.
    pub fn identify(&self, token: &str) -> Option<(&str, Role)> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.0 {
            if same(&entry.hash, &presented) {
                found = Some((entry.name.as_str(), entry.role));
            }
        }
        found
    }

    /// Checks a bearer token from `headers` (or `query_token`) against the allowed roles:
    /// none or unknown is 401, a known token of another role 403. Only the Jasmin credential
    /// may come in the query string, where URLs leave it in logs.
    pub fn authorise(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        allowed: &[Role],
    ) -> Result<(&str, Role), ApiError> {
        let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let token = bearer
            .or(query_token)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
        let (name, role) =
            self.identify(token).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
        if bearer.is_none() && role != Role::Jasmin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only Jasmin's receipt credential may be given in the URL",
            ));
        }
        if allowed.contains(&role) {
            Ok((name, role))
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "this token's role may not use this route"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let config = [
            ApiToken { name: "gw".into(), token_sha256: hash_token("gateway-secret"), role: "gateway".into() },
            ApiToken { name: "reg".into(), token_sha256: hash_token("regulator-secret"), role: "regulator".into() },
            ApiToken { name: "jasmin".into(), token_sha256: hash_token("jasmin-secret"), role: "jasmin".into() },
        ];
        Tokens::from_config(&config).unwrap()
    }

    #[test]
    fn tokens_are_recognised_by_their_hash() {
        let tokens = tokens();
        assert_eq!(tokens.identify("gateway-secret"), Some(("gw", Role::Gateway)));
        assert_eq!(tokens.identify("regulator-secret"), Some(("reg", Role::Regulator)));
        assert_eq!(tokens.identify("gateway-secret "), None);
    }

    #[test]
    fn missing_unknown_and_wrong_role_tokens_are_told_apart() {
        let tokens = tokens();
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", value.parse().unwrap());
            h
        };
        assert_eq!(
            tokens.authorise(&HeaderMap::new(), None, &[Role::Gateway]).err().unwrap().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            tokens.authorise(&headers("Bearer nope"), None, &[Role::Gateway]).err().unwrap().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            tokens.authorise(&headers("Bearer regulator-secret"), None, &[Role::Gateway]).err().unwrap().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            tokens.authorise(&headers("Bearer gateway-secret"), None, &[Role::Gateway]).ok(),
            Some(("gw", Role::Gateway))
        );
        assert_eq!(
            tokens.authorise(&HeaderMap::new(), Some("gateway-secret"), &[Role::Gateway]).err().unwrap().0,
            StatusCode::FORBIDDEN,
            "a gateway token is not taken from a URL"
        );
        assert_eq!(
            tokens.authorise(&HeaderMap::new(), Some("jasmin-secret"), &[Role::Jasmin]).ok(),
            Some(("jasmin", Role::Jasmin))
        );
        assert_eq!(
            tokens.authorise(&headers("Bearer jasmin-secret"), None, &[Role::Gateway]).err().unwrap().0,
            StatusCode::FORBIDDEN,
            "the Jasmin credential posts nothing but Jasmin receipts"
        );
    }
}
