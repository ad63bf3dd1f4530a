//! SCRAM credentials (RFC 5802, KIP-84) as Kafka's `ScramFormatter` derives them: a client
//! tool salts and hashes the password (PBKDF2 with the mechanism's HMAC) and sends only the
//! salted password; the broker keeps the stored key and the server key, never the password.

use hmac::{KeyInit, Mac};
use sha2::Digest;

use super::{ScramCredential, ScramMechanism};

/// Kafka's bounds on the iteration count of a SCRAM credential (both mechanisms).
pub const ITERATIONS_MIN: i32 = 4096;
pub const ITERATIONS_MAX: i32 = 16384;

impl ScramMechanism {
    /// The mechanism code of Describe/AlterUserScramCredentials (0 is UNKNOWN).
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// HMAC of `data` keyed by `key` with the mechanism's hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// The mechanism's hash of `data`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => sha2::Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with the mechanism's HMAC, one hash long.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<sha2::Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// The credential the broker stores for a salted password (Kafka's
/// `ScramFormatter.generateCredential` from AlterUserScramCredentials' upsertion):
/// StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword,
/// "Server Key").
pub fn credential_from_salted_password(
    mechanism: ScramMechanism,
    salt: &[u8],
    salted_password: &[u8],
    iterations: i32,
) -> ScramCredential {
    let client_key = mechanism.hmac(salted_password, b"Client Key");
    ScramCredential {
        mechanism,
        salt: salt.to_vec(),
        stored_key: mechanism.hash(&client_key),
        server_key: mechanism.hmac(salted_password, b"Server Key"),
        iterations,
    }
}

/// Whether `password` is the one `credential` was made from (what a SCRAM exchange proves,
/// without the exchange: for tests and tools).
pub fn password_matches(credential: &ScramCredential, password: &str) -> bool {
    let Ok(iterations) = u32::try_from(credential.iterations) else {
        return false;
    };
    let salted =
        credential
            .mechanism
            .salted_password(password.as_bytes(), &credential.salt, iterations);
    let derived = credential_from_salted_password(
        credential.mechanism,
        &credential.salt,
        &salted,
        credential.iterations,
    );
    derived.stored_key == credential.stored_key && derived.server_key == credential.server_key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential verifies its own password and no other, for both mechanisms.
    #[test]
    fn credential_round_trip() {
        let salt = b"0123456789abcdef";
        for (mechanism, key_bytes) in [(ScramMechanism::Sha256, 32), (ScramMechanism::Sha512, 64)] {
            let salted = mechanism.salted_password(b"pencil", salt, 4096);
            let credential = credential_from_salted_password(mechanism, salt, &salted, 4096);
            assert_eq!(credential.stored_key.len(), key_bytes);
            assert_eq!(credential.server_key.len(), key_bytes);
            assert!(password_matches(&credential, "pencil"));
            assert!(!password_matches(&credential, "pencil2"));
        }
    }

    /// PBKDF2-HMAC-SHA256 test vector (RFC 7914 §11): P="passwd", S="salt", c=1.
    #[test]
    fn pbkdf2_vector() {
        let out = ScramMechanism::Sha256.salted_password(b"passwd", b"salt", 1);
        assert_eq!(out[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }
}
