//! The JAAS configuration text Kafka brokers take for SASL users
//! (`listener.name.<listener>.plain.sasl.jaas.config` or `sasl.jaas.config`):
//! `org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="secret";`.
//! Only what the PLAIN server needs is read: the `user_<name>` options of a PlainLoginModule.

use std::collections::BTreeMap;

/// Kafka's login module for SASL/PLAIN.
pub const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
/// Kafka's login module for SCRAM (its options name the broker's own inter-broker user).
/// Kafka's login module for OAUTHBEARER (its options configure the unsecured validator).
pub const OAUTHBEARER_LOGIN_MODULE: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";
/// Kafka's login module for SCRAM (its options name the broker's own inter-broker user).
pub const SCRAM_LOGIN_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";

/// One login module entry: class, control flag and options.
#[derive(Debug, PartialEq, Eq)]
pub struct LoginModule {
    pub class: String,
    pub flag: String,
    pub options: BTreeMap<String, String>,
}

/// Parses JAAS text: one or more `Class flag key=value ...;` entries; values may be quoted
/// with `"` (backslash escapes the next character). The error says what is wrong, never a
/// value (it may be a password).
pub fn parse(text: &str) -> Result<Vec<LoginModule>, String> {
    let mut tokens = Tokens {
        chars: text.chars().peekable(),
    };
    let mut modules = Vec::new();
    loop {
        let Some(class) = tokens.next()? else { break };
        let Token::Word(class) = class else {
            return Err("expected a login module class".into());
        };
        let Some(Token::Word(flag)) = tokens.next()? else {
            return Err(format!("login module {class}: expected a control flag"));
        };
        if !["required", "requisite", "sufficient", "optional"].contains(&flag.as_str()) {
            return Err(format!("login module {class}: unknown control flag"));
        }
        let mut options = BTreeMap::new();
        loop {
            match tokens.next()? {
                Some(Token::End) => break,
                Some(Token::Word(key)) => {
                    if tokens.next()? != Some(Token::Equals) {
                        return Err(format!("login module {class}: option {key} has no '='"));
                    }
                    let Some(Token::Word(value)) = tokens.next()? else {
                        return Err(format!("login module {class}: option {key} has no value"));
                    };
                    options.insert(key, value);
                }
                _ => return Err(format!("login module {class}: expected key=value or ';'")),
            }
        }
        modules.push(LoginModule {
            class,
            flag,
            options,
        });
    }
    if modules.is_empty() {
        return Err("no login module".into());
    }
    Ok(modules)
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Equals,
    End,
}

struct Tokens<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Tokens<'_> {
    fn next(&mut self) -> Result<Option<Token>, String> {
        while self.chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(c) = self.chars.next() else {
            return Ok(None);
        };
        match c {
            '=' => Ok(Some(Token::Equals)),
            ';' => Ok(Some(Token::End)),
            '"' => {
                let mut word = String::new();
                loop {
                    match self.chars.next() {
                        None => return Err("unterminated quoted value".into()),
                        Some('"') => return Ok(Some(Token::Word(word))),
                        Some('\\') => match self.chars.next() {
                            Some(escaped) => word.push(escaped),
                            None => return Err("unterminated quoted value".into()),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            first => {
                let mut word = String::from(first);
                while let Some(next) = self
                    .chars
                    .next_if(|c| !c.is_whitespace() && *c != '=' && *c != ';' && *c != '"')
                {
                    word.push(next);
                }
                Ok(Some(Token::Word(word)))
            }
        }
    }
}

/// The PLAIN users of a listener: name → password.
#[derive(Debug, Default)]
pub struct PlainUsers {
    passwords: BTreeMap<String, String>,
}

impl PlainUsers {
    /// The `user_<name>` options of the PlainLoginModule entries of `modules`.
    pub fn from_modules(modules: &[LoginModule]) -> PlainUsers {
        let passwords = modules
            .iter()
            .filter(|m| m.class == PLAIN_LOGIN_MODULE)
            .flat_map(|m| m.options.iter())
            .filter_map(|(key, value)| {
                Some((key.strip_prefix("user_")?.to_string(), value.clone()))
            })
            .collect();
        PlainUsers { passwords }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> PlainUsers {
        PlainUsers {
            passwords: pairs
                .into_iter()
                .map(|(user, password)| (user.to_string(), password.to_string()))
                .collect(),
        }
    }

    pub fn password(&self, user: &str) -> Option<&str> {
        self.passwords.get(user).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafkas_plain_config() {
        let text = r#"org.apache.kafka.common.security.plain.PlainLoginModule required
            username="admin" password="admin-secret"
            user_admin="admin-secret" user_alice="alice \"quoted\" secret";"#;
        let modules = parse(text).unwrap();
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].flag, "required");
        let users = PlainUsers::from_modules(&modules);
        assert_eq!(users.password("alice"), Some("alice \"quoted\" secret"));
        assert_eq!(users.password("admin"), Some("admin-secret"));
        assert_eq!(users.password("username"), None);
    }

    #[test]
    fn refuses_broken_text() {
        assert!(parse("").is_err());
        assert!(parse("Module required user_a=\"x").is_err());
        assert!(parse("Module maybe;").is_err());
        assert!(parse("Module required user_a;").is_err());
    }
}
