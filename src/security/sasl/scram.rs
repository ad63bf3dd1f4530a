//! SCRAM-SHA-256 / SCRAM-SHA-512 server side (RFC 5802, RFC 7677), reading users'
//! credentials (salt, iterations, stored key, server key) from the [`CredentialStore`].
//!
//! The exchange: client-first (`n,,n=user,r=cnonce`) → server-first (`r=cnonce+snonce,s=salt,
//! i=iterations`) → client-final (`c=biws,r=nonce,p=proof`) → server-final (`v=signature`).
//! The proof is checked by recomputing StoredKey = H(proof XOR HMAC(StoredKey, AuthMessage))
//! and comparing in constant time; the password never reaches the broker.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{AuthenticationFailed, SaslServer, Step};
use crate::security::{CredentialStore, ScramCredential, ScramMechanism};

/// Random bytes in the server's nonce (base64-encoded into the message).
const SERVER_NONCE_BYTES: usize = 32;
/// Kafka's smallest and largest iteration counts for SCRAM credentials.
pub const ITERATIONS_MIN: i32 = 4096;
pub const ITERATIONS_MAX: i32 = 16384;

fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// RFC 5802's Hi(): PBKDF2 with HMAC of the mechanism's hash.
fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            out.to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            out.to_vec()
        }
    }
}

/// The credential Kafka stores for `password` (what AlterUserScramCredentials derives).
pub fn credential(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: i32,
) -> ScramCredential {
    let salted = salted_password(
        mechanism,
        password.as_bytes(),
        salt,
        iterations.max(1) as u32,
    );
    let client_key = hmac(mechanism, &salted, b"Client Key");
    ScramCredential {
        mechanism,
        salt: salt.to_vec(),
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, &salted, b"Server Key"),
        iterations,
    }
}

/// A credential store held in memory (tests, and a broker before the metadata-backed store).
#[derive(Default)]
pub struct MemoryCredentials {
    credentials: RwLock<HashMap<(String, ScramMechanism), ScramCredential>>,
}

impl MemoryCredentials {
    pub fn insert(&self, user: &str, credential: ScramCredential) {
        self.credentials
            .write()
            .expect("credentials lock")
            .insert((user.to_string(), credential.mechanism), credential);
    }
}

impl CredentialStore for MemoryCredentials {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.credentials
            .read()
            .expect("credentials lock")
            .get(&(user.to_string(), mechanism))
            .cloned()
    }
}

enum State {
    ClientFirst,
    ClientFinal {
        user: String,
        credential: ScramCredential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

pub struct ScramServer {
    mechanism: ScramMechanism,
    store: Arc<dyn CredentialStore>,
    state: State,
    /// Fixed only by tests replaying RFC 7677's example.
    server_nonce: Option<String>,
}

fn failed(message: &str) -> AuthenticationFailed {
    AuthenticationFailed::new(format!("Authentication failed: {message}"))
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(index) = rest.find('=') {
        out.push_str(&rest[..index]);
        let escape = rest.get(index..index + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[index + 3..];
    }
    out.push_str(rest);
    Some(out)
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism, store: Arc<dyn CredentialStore>) -> ScramServer {
        ScramServer {
            mechanism,
            store,
            state: State::ClientFirst,
            server_nonce: None,
        }
    }

    fn new_server_nonce(&self) -> Result<String, AuthenticationFailed> {
        if let Some(nonce) = &self.server_nonce {
            return Ok(nonce.clone());
        }
        let mut bytes = [0u8; SERVER_NONCE_BYTES];
        getrandom::fill(&mut bytes).map_err(|_| failed("no random source"))?;
        Ok(STANDARD_NO_PAD.encode(bytes))
    }

    fn client_first(&mut self, message: &str) -> Result<Step, AuthenticationFailed> {
        // gs2-header: no channel binding ("n" or "y"), an optional authzid, then the bare part.
        let (binding, rest) = message
            .split_once(',')
            .ok_or_else(|| failed("Invalid SCRAM client first message"))?;
        if binding != "n" && binding != "y" {
            return Err(failed("SCRAM channel binding is not supported"));
        }
        let (authorization_id, bare) = rest
            .split_once(',')
            .ok_or_else(|| failed("Invalid SCRAM client first message"))?;
        let mut fields = bare.split(',');
        let user = fields
            .next()
            .and_then(|field| field.strip_prefix("n="))
            .and_then(decode_saslname)
            .ok_or_else(|| failed("Invalid SCRAM client first message"))?;
        let client_nonce = fields
            .next()
            .and_then(|field| field.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or_else(|| failed("Invalid SCRAM client first message"))?;
        // Extensions (KIP-84's `tokenauth=true` for delegation tokens): tokens are not served.
        for extension in fields {
            if extension.starts_with("tokenauth=") {
                return Err(failed("delegation tokens are not supported"));
            }
        }
        if let Some(requested) = authorization_id.strip_prefix("a=") {
            if decode_saslname(requested).as_deref() != Some(user.as_str()) {
                return Err(failed(
                    "Authorization id does not match the authentication id",
                ));
            }
        } else if !authorization_id.is_empty() {
            return Err(failed("Invalid SCRAM client first message"));
        }
        let credential = self
            .store
            .scram(&user, self.mechanism)
            .ok_or_else(|| failed("Invalid user credentials"))?;
        let nonce = format!("{client_nonce}{}", self.new_server_nonce()?);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::ClientFinal {
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(Step::Challenge(server_first.into_bytes()))
    }

    fn client_final(&mut self, message: &str) -> Result<Step, AuthenticationFailed> {
        let State::ClientFinal {
            user,
            credential,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            unreachable!("client_final only in the ClientFinal state");
        };
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or_else(|| failed("Invalid SCRAM client final message"))?;
        let mut fields = without_proof.split(',');
        let binding = fields.next().and_then(|f| f.strip_prefix("c="));
        let final_nonce = fields.next().and_then(|f| f.strip_prefix("r="));
        // c= is base64 of the gs2 header ("n,," → "biws"); only no-binding headers are taken.
        let binding_ok = binding
            .and_then(|b| STANDARD.decode(b).ok())
            .is_some_and(|header| header.starts_with(b"n,") || header.starts_with(b"y,"));
        if !binding_ok || final_nonce != Some(nonce.as_str()) {
            return Err(failed("Invalid SCRAM client final message"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| failed("Invalid SCRAM client final message"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(
            self.mechanism,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        if proof.len() != client_signature.len() {
            return Err(failed("Invalid client credentials"));
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored_key = hash(self.mechanism, &client_key);
        if !bool::from(stored_key.ct_eq(&credential.stored_key)) {
            return Err(failed("Invalid client credentials"));
        }
        let server_signature = hmac(
            self.mechanism,
            &credential.server_key,
            auth_message.as_bytes(),
        );
        Ok(Step::Complete {
            user,
            response: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
        })
    }
}

impl SaslServer for ScramServer {
    fn evaluate(&mut self, token: &[u8]) -> Result<Step, AuthenticationFailed> {
        let message =
            std::str::from_utf8(token).map_err(|_| failed("SCRAM message is not UTF-8"))?;
        match self.state {
            State::ClientFirst => self.client_first(message),
            State::ClientFinal { .. } => self.client_final(message),
            State::Done => Err(failed("Unexpected SCRAM message after completion")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(user: &str, credential: ScramCredential) -> Arc<dyn CredentialStore> {
        let store = MemoryCredentials::default();
        store.insert(user, credential);
        Arc::new(store)
    }

    /// RFC 7677 §3: the SCRAM-SHA-256 exchange for user "user", password "pencil".
    #[test]
    fn rfc7677_example() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = credential(ScramMechanism::Sha256, "pencil", &salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256, store_with("user", credential));
        server.server_nonce = Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        assert_eq!(
            server.evaluate(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
            Ok(Step::Challenge(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            ))
        );
        assert_eq!(
            server.evaluate(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            Ok(Step::Complete {
                user: "user".into(),
                response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            })
        );
    }

    /// A client's side of the exchange, to test SHA-512 and wrong passwords end to end.
    fn client_final(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let fields: HashMap<&str, &str> = server_first
            .split(',')
            .filter_map(|f| f.split_once('='))
            .collect();
        let salt = STANDARD.decode(fields["s"]).unwrap();
        let iterations: u32 = fields["i"].parse().unwrap();
        let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        let stored_key = hash(mechanism, &client_key);
        let without_proof = format!("c=biws,r={}", fields["r"]);
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    fn exchange(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<Step, AuthenticationFailed> {
        let credential = credential(mechanism, "alice-secret", b"salty", ITERATIONS_MIN);
        let mut server = ScramServer::new(mechanism, store_with("alice", credential));
        let bare = format!("n={user},r=clientnonce");
        let Step::Challenge(first) = server.evaluate(format!("n,,{bare}").as_bytes())? else {
            panic!("expected a challenge");
        };
        let first = String::from_utf8(first).unwrap();
        assert!(first.starts_with("r=clientnonce") && first.len() > "r=clientnonce".len() + 20);
        server.evaluate(client_final(mechanism, password, &bare, &first).as_bytes())
    }

    #[test]
    fn sha512_exchange_and_failures() {
        assert!(matches!(
            exchange(ScramMechanism::Sha512, "alice", "alice-secret"),
            Ok(Step::Complete { user, .. }) if user == "alice"
        ));
        assert!(exchange(ScramMechanism::Sha512, "alice", "wrong").is_err());
        assert!(exchange(ScramMechanism::Sha256, "alice", "wrong").is_err());
        assert!(exchange(ScramMechanism::Sha256, "bob", "alice-secret").is_err());
        assert!(exchange(ScramMechanism::Sha256, "alice", "alice-secret").is_ok());
    }

    #[test]
    fn malformed_messages_fail() {
        let store = store_with("a", credential(ScramMechanism::Sha256, "p", b"s", 4096));
        for message in [
            &b""[..],
            b"n,,",
            b"p=tls,,n=a,r=x",
            b"n,,n=a",
            b"n,,n=a=,r=x",
            b"\xff",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256, store.clone());
            assert!(server.evaluate(message).is_err(), "{message:?}");
        }
        let mut server = ScramServer::new(ScramMechanism::Sha256, store);
        assert!(server.evaluate(b"n,,n=a,r=x").is_ok());
        assert!(server.evaluate(b"c=biws,r=other,p=AAAA").is_err());
        assert!(server.evaluate(b"c=biws,r=x,p=AAAA").is_err());
        assert_eq!(decode_saslname("a=2Cb=3D").as_deref(), Some("a,b="));
    }
}
