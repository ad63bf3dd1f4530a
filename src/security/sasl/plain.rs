//! SASL PLAIN (RFC 4616): one token `[authzid] NUL authcid NUL password`, checked against the
//! users of the listener's JAAS config (`user_<name>="<password>"`), as Kafka's
//! `PlainServerCallbackHandler` does.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::jaas::PlainUsers;
use super::{AuthenticationFailed, SaslServer, Step};

/// Longest user name or password accepted (the whole token is already bounded by
/// `sasl.server.max.receive.size`).
const FIELD_BYTES_MAX: usize = 4096;

pub struct PlainServer {
    users: Arc<PlainUsers>,
    done: bool,
}

impl PlainServer {
    pub fn new(users: Arc<PlainUsers>) -> PlainServer {
        PlainServer { users, done: false }
    }
}

impl SaslServer for PlainServer {
    fn evaluate(&mut self, token: &[u8]) -> Result<Step, AuthenticationFailed> {
        if self.done {
            return Err(AuthenticationFailed::new(
                "Unexpected SASL token after PLAIN authentication completed",
            ));
        }
        self.done = true;
        let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
        let [authorization_id, user, password] = parts[..] else {
            return Err(AuthenticationFailed::new(
                "Invalid SASL/PLAIN response: expected 3 tokens",
            ));
        };
        if user.is_empty() || user.len() > FIELD_BYTES_MAX || password.len() > FIELD_BYTES_MAX {
            return Err(AuthenticationFailed::new(
                "Authentication failed: username not specified",
            ));
        }
        let user = std::str::from_utf8(user)
            .map_err(|_| AuthenticationFailed::new("Invalid SASL/PLAIN response: not UTF-8"))?;
        if !authorization_id.is_empty() && authorization_id != user.as_bytes() {
            return Err(AuthenticationFailed::new(
                "Authentication failed: Client requested an authorization id that is different from username",
            ));
        }
        // Compare against a stand-in when the user is unknown, so the time taken does not
        // tell whether the user exists.
        let expected = self.users.password(user);
        let matches: bool = expected
            .unwrap_or("\u{0}unknown-user")
            .as_bytes()
            .ct_eq(password)
            .into();
        if expected.is_none() || !matches {
            return Err(AuthenticationFailed::new(
                "Authentication failed: Invalid username or password",
            ));
        }
        Ok(Step::Complete {
            user: user.to_string(),
            response: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> PlainServer {
        let users = PlainUsers::from_pairs([("alice", "alice-secret")]);
        PlainServer::new(Arc::new(users))
    }

    #[test]
    fn accepts_the_right_password_only() {
        assert_eq!(
            server().evaluate(b"\0alice\0alice-secret"),
            Ok(Step::Complete {
                user: "alice".into(),
                response: Vec::new()
            })
        );
        assert!(server().evaluate(b"alice\0alice\0alice-secret").is_ok());
        assert!(server().evaluate(b"\0alice\0wrong").is_err());
        assert!(server().evaluate(b"\0bob\0alice-secret").is_err());
        assert!(server().evaluate(b"bob\0alice\0alice-secret").is_err());
        assert!(server().evaluate(b"\0alice").is_err());
        assert!(server().evaluate(b"").is_err());
        let mut once = server();
        assert!(once.evaluate(b"\0alice\0alice-secret").is_ok());
        assert!(once.evaluate(b"\0alice\0alice-secret").is_err());
    }
}
