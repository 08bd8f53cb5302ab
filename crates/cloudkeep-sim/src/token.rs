//! Access tokens: ES256-signed JWTs with the claims Entra ID puts in ARM
//! tokens, and their verification on the ARM side.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

use crate::SimError;

/// Audiences ARM accepts (the `.default` scopes of both ARM resource ids).
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub oid: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    pub ver: String,
    pub uti: String,
}

/// ID token claims for the authorisation-code flow with `openid`.
#[derive(Debug, Clone, Serialize)]
pub struct IdClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub oid: String,
    pub sub: String,
    pub preferred_username: String,
    pub name: String,
    pub ver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

pub struct Signer {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature is invalid")]
    Invalid,
}

impl Signer {
    pub fn new() -> Result<Self, SimError> {
        let key = KeyPair::generate().map_err(|e| SimError::Tls(e.to_string()))?;
        let encoding = EncodingKey::from_ec_der(&key.serialize_der());
        let raw = key.public_key_raw();
        let decoding = DecodingKey::from_ec_der(raw);
        let (x, y) = if raw.len() == 65 {
            (&raw[1..33], &raw[33..65])
        } else {
            (&raw[..0], &raw[..0])
        };
        let kid = URL_SAFE_NO_PAD
            .encode(&ring::digest::digest(&ring::digest::SHA256, raw).as_ref()[..15]);
        Ok(Signer {
            kid,
            encoding,
            decoding,
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
        })
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        // Signing with a freshly generated P-256 key cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Checks the signature and decodes the claims; expiry and audience are
    /// checked by the caller, which answers each with ARM's own error.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "EC", "use": "sig", "crv": "P-256", "alg": "ES256",
                "kid": self.kid, "x": self.x, "y": self.y,
            }]
        })
    }
}
